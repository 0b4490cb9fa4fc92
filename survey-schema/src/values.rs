//! The closed enums whose values are exported as attribute values: each
//! has `ALL`, `as_str` (the exported text), `Display` and `FromStr`.

/// Error returned when a string names no value of a closed schema enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{found}\"; expected one of {expected}")]
pub struct UnknownValue {
    pub(crate) what: &'static str,
    pub(crate) found: String,
    pub(crate) expected: String,
}

macro_rules! closed_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exported attribute value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The variant's name in Rust source, as the macros' generated
            /// code spells it.
            #[doc(hidden)]
            pub const fn variant_name(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::values::UnknownValue;
            fn from_str(s: &str) -> Result<Self, $crate::values::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::values::UnknownValue {
                        what: $what,
                        found: s.chars().take(64).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

pub(crate) use closed_enum;

closed_enum! {
    /// How a launch came about: the values of `mesh_llm.launch_kind`.
    LaunchKind, "launch kind" {
        /// The first model a node launches at startup.
        Startup => "startup",
        /// A model loaded at run time through the control API.
        RuntimeLoad => "runtime_load",
        /// A further model launched at startup beside the first.
        MultiModel => "multi_model",
        /// A fallback launch after a mixture-of-experts split failed.
        MoeFallback => "moe_fallback",
        /// One shard of a mixture-of-experts model.
        MoeShard => "moe_shard",
    }
}

closed_enum! {
    /// Why a launch failed: the values of `mesh_llm.failure_reason`.
    ///
    /// Error types map onto it through survey's `FailureReason` trait.
    FailureKind, "failure reason" {
        /// The backend process could not be started.
        SpawnFailed => "spawn_failed",
        /// The backend did not become healthy before its deadline.
        HealthTimeout => "health_timeout",
        /// The backend exited before it became healthy.
        ExitedBeforeHealthy => "exited_before_healthy",
        /// The local proxy in front of the backend failed to start.
        BackendProxyFailed => "backend_proxy_failed",
        /// The node refused the model for lack of capacity.
        CapacityRejected => "capacity_rejected",
        /// The backend crashed with a known llama.cpp KV-cache signature.
        KnownKvCacheCrash => "known_kv_cache_crash",
        /// A configured multimodal projector file is missing.
        MmprojMissing => "mmproj_missing",
        /// Anything else, including a launch future dropped before it finished.
        Other => "other",
    }
}

closed_enum! {
    /// Context-length bucket: the values of `mesh_llm.context_bucket`.
    ContextBucket, "context bucket" {
        /// Up to 8192 tokens.
        UpTo8k => "<=8k",
        /// 8193 to 16384 tokens.
        From8kTo16k => "8k_16k",
        /// 16385 to 32768 tokens.
        From16kTo32k => "16k_32k",
        /// 32769 to 65536 tokens.
        From32kTo64k => "32k_64k",
        /// 65537 to 131072 tokens.
        From64kTo128k => "64k_128k",
        /// More than 131072 tokens.
        Over128k => ">128k",
    }
}

closed_enum! {
    /// How an inference request forwarded to a loaded model ended: the
    /// values of `mesh_llm.request_outcome`. The host decides it from its
    /// own code path, never from text.
    RequestOutcome, "request outcome" {
        /// Answered in full with a 2xx status.
        Ok => "ok",
        /// The backend answered an error status, refused the connection,
        /// or broke off mid-answer.
        BackendError => "backend_error",
        /// The backend was silent past the host's limit.
        Timeout => "timeout",
        /// The client hung up before the answer ended.
        ClientCancelled => "client_cancelled",
        /// The host cut the request at shutdown.
        Shutdown => "shutdown",
    }
}

impl ContextBucket {
    /// The bucket a context length falls in (`k` = 1024 tokens).
    pub const fn of(context_length: u64) -> ContextBucket {
        const K: u64 = 1024;
        match context_length {
            n if n <= 8 * K => ContextBucket::UpTo8k,
            n if n <= 16 * K => ContextBucket::From8kTo16k,
            n if n <= 32 * K => ContextBucket::From16kTo32k,
            n if n <= 64 * K => ContextBucket::From32kTo64k,
            n if n <= 128 * K => ContextBucket::From64kTo128k,
            _ => ContextBucket::Over128k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_buckets_have_exact_edges() {
        let cases = [
            (0, "<=8k"),
            (8192, "<=8k"),
            (8193, "8k_16k"),
            (16384, "8k_16k"),
            (16385, "16k_32k"),
            (32768, "16k_32k"),
            (32769, "32k_64k"),
            (65536, "32k_64k"),
            (65537, "64k_128k"),
            (131072, "64k_128k"),
            (131073, ">128k"),
            (u64::MAX, ">128k"),
        ];
        for (n, bucket) in cases {
            assert_eq!(ContextBucket::of(n).as_str(), bucket, "context length {n}");
        }
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for kind in LaunchKind::ALL {
            assert_eq!(kind.as_str().parse::<LaunchKind>(), Ok(*kind));
        }
        for reason in FailureKind::ALL {
            assert_eq!(reason.as_str().parse::<FailureKind>(), Ok(*reason));
        }
        for (i, outcome) in RequestOutcome::ALL.iter().enumerate() {
            assert_eq!(outcome.as_str().parse::<RequestOutcome>(), Ok(*outcome));
            // The recorder indexes its per-outcome attributes so.
            assert_eq!(*outcome as usize, i);
        }
        let outcomes: Vec<_> = RequestOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            outcomes,
            [
                "ok",
                "backend_error",
                "timeout",
                "client_cancelled",
                "shutdown"
            ]
        );
        let err = "runtime_lod".parse::<LaunchKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown launch kind \"runtime_lod\"; expected one of startup, runtime_load, \
             multi_model, moe_fallback, moe_shard"
        );
    }
}
