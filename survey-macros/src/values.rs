//! The closed value lists the macros check literals against, read from the
//! schema crate's enums (`survey_schema::LaunchKind` and `FailureKind`):
//! each value's exported text and its variant's name. A value added to the
//! schema is valid in `kind = "..."` and `reason = "..."` with no change
//! here, and the trybuild pass tests expand every value against the runtime.

use proc_macro2::Ident;
use survey_schema::{FailureKind, LaunchKind};
use syn::LitStr;

/// One value: its exported text and its variant's name.
pub type Entry = (&'static str, &'static str);

/// `kind = "..."` literals and their `LaunchKind` variants.
pub fn launch_kinds() -> Vec<Entry> {
    LaunchKind::ALL
        .iter()
        .map(|kind| (kind.as_str(), kind.variant_name()))
        .collect()
}

/// `reason = "..."` literals and their `FailureKind` variants.
pub fn failure_reasons() -> Vec<Entry> {
    FailureKind::ALL
        .iter()
        .map(|kind| (kind.as_str(), kind.variant_name()))
        .collect()
}

/// The valid values of `table`, for error messages: `a, b, c`.
pub fn list(table: &[Entry]) -> String {
    table
        .iter()
        .map(|(text, _)| *text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The variant for `lit`, or an error on `lit` listing the valid values.
pub fn lookup(table: &[Entry], what: &str, lit: &LitStr) -> syn::Result<Ident> {
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
    use super::*;

    #[test]
    fn literals_name_their_variants() {
        let lit = LitStr::new("runtime_load", proc_macro2::Span::call_site());
        let variant = lookup(&launch_kinds(), "kind", &lit).unwrap();
        assert_eq!(variant.to_string(), "RuntimeLoad");
        let lit = LitStr::new("known_kv_cache_crash", proc_macro2::Span::call_site());
        let variant = lookup(&failure_reasons(), "failure reason", &lit).unwrap();
        assert_eq!(variant.to_string(), "KnownKvCacheCrash");
        assert_eq!(launch_kinds().len(), LaunchKind::ALL.len());
        assert_eq!(failure_reasons().len(), FailureKind::ALL.len());
    }

    #[test]
    fn unknown_literals_list_the_valid_values() {
        let lit = LitStr::new("runtime_lod", proc_macro2::Span::call_site());
        let err = lookup(&launch_kinds(), "kind", &lit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown kind \"runtime_lod\"; expected one of startup, runtime_load, \
             multi_model, moe_fallback, moe_shard"
        );
    }
}
