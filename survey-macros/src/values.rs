//! The closed value lists the macros check literals against. They mirror
//! `survey::LaunchKind` and `survey::FailureKind`; the trybuild pass tests use
//! every value, so the two cannot drift apart unnoticed.

use proc_macro2::Ident;
use syn::LitStr;

/// `kind = "..."` literals and their `LaunchKind` variants.
pub const LAUNCH_KINDS: &[(&str, &str)] = &[
    ("startup", "Startup"),
    ("runtime_load", "RuntimeLoad"),
    ("multi_model", "MultiModel"),
    ("moe_fallback", "MoeFallback"),
    ("moe_shard", "MoeShard"),
];

/// `reason = "..."` literals and their `FailureKind` variants.
pub const FAILURE_REASONS: &[(&str, &str)] = &[
    ("spawn_failed", "SpawnFailed"),
    ("health_timeout", "HealthTimeout"),
    ("exited_before_healthy", "ExitedBeforeHealthy"),
    ("backend_proxy_failed", "BackendProxyFailed"),
    ("capacity_rejected", "CapacityRejected"),
    ("known_kv_cache_crash", "KnownKvCacheCrash"),
    ("mmproj_missing", "MmprojMissing"),
    ("other", "Other"),
];

/// The variant for `lit`, or an error on `lit` listing the valid values.
pub fn lookup(table: &[(&str, &str)], what: &str, lit: &LitStr) -> syn::Result<Ident> {
    let value = lit.value();
    match table.iter().find(|(text, _)| *text == value) {
        Some((_, variant)) => Ok(Ident::new(variant, lit.span())),
        None => {
            let expected: Vec<&str> = table.iter().map(|(text, _)| *text).collect();
            Err(syn::Error::new(
                lit.span(),
                format!(
                    "unknown {what} \"{value}\"; expected one of {}",
                    expected.join(", ")
                ),
            ))
        }
    }
}
