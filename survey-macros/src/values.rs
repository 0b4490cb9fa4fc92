//! The closed value lists the macros check literals against. They mirror
//! `survey::LaunchKind` and `survey::FailureKind`: the tests below check both
//! directions (every entry names a variant whose `as_str()` is its literal,
//! and every variant has an entry; a new variant breaks their exhaustive
//! `match` until it is added here), and the trybuild pass tests expand every
//! value against the runtime.

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

/// The valid values of `table`, for error messages: `a, b, c`.
pub fn list(table: &[(&str, &str)]) -> String {
    table
        .iter()
        .map(|(text, _)| *text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The variant for `lit`, or an error on `lit` listing the valid values.
pub fn lookup(table: &[(&str, &str)], what: &str, lit: &LitStr) -> syn::Result<Ident> {
    let value = lit.value();
    match table.iter().find(|(text, _)| *text == value) {
        Some((_, variant)) => Ok(Ident::new(variant, lit.span())),
        None => Err(syn::Error::new(
            lit.span(),
            format!(
                "unknown {what} \"{value}\"; expected one of {}",
                list(table)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use survey_runtime::{FailureKind, LaunchKind};

    use super::{FAILURE_REASONS, LAUNCH_KINDS};

    fn launch_kind_variant(kind: LaunchKind) -> &'static str {
        match kind {
            LaunchKind::Startup => "Startup",
            LaunchKind::RuntimeLoad => "RuntimeLoad",
            LaunchKind::MultiModel => "MultiModel",
            LaunchKind::MoeFallback => "MoeFallback",
            LaunchKind::MoeShard => "MoeShard",
        }
    }

    fn failure_kind_variant(kind: FailureKind) -> &'static str {
        match kind {
            FailureKind::SpawnFailed => "SpawnFailed",
            FailureKind::HealthTimeout => "HealthTimeout",
            FailureKind::ExitedBeforeHealthy => "ExitedBeforeHealthy",
            FailureKind::BackendProxyFailed => "BackendProxyFailed",
            FailureKind::CapacityRejected => "CapacityRejected",
            FailureKind::KnownKvCacheCrash => "KnownKvCacheCrash",
            FailureKind::MmprojMissing => "MmprojMissing",
            FailureKind::Other => "Other",
        }
    }

    /// `table` lists exactly the runtime values, each as its variant and
    /// exported string.
    fn assert_mirrors(table: &[(&str, &str)], runtime: &[(&'static str, &'static str)]) {
        for &(text, variant) in table {
            let found = runtime.iter().find(|(_, name)| *name == variant);
            assert_eq!(
                found.map(|(as_str, _)| *as_str),
                Some(text),
                "table entry ({text:?}, {variant:?})"
            );
        }
        for &(as_str, variant) in runtime {
            assert!(
                table.contains(&(as_str, variant)),
                "runtime value {variant} ({as_str:?}) missing from the table"
            );
        }
        assert_eq!(table.len(), runtime.len(), "duplicate table entries");
    }

    #[test]
    fn launch_kinds_mirror_the_runtime() {
        let runtime: Vec<_> = LaunchKind::ALL
            .iter()
            .map(|&kind| (kind.as_str(), launch_kind_variant(kind)))
            .collect();
        assert_mirrors(LAUNCH_KINDS, &runtime);
    }

    #[test]
    fn failure_reasons_mirror_the_runtime() {
        let runtime: Vec<_> = FailureKind::ALL
            .iter()
            .map(|&kind| (kind.as_str(), failure_kind_variant(kind)))
            .collect();
        assert_mirrors(FAILURE_REASONS, &runtime);
    }
}
