//! Procedural macros of the [`survey`](https://docs.rs/survey) crate.
//!
//! Use them through the facade: `#[survey::launch]`, `#[survey::unload]`,
//! `#[survey::exit]` and `#[derive(survey::FailureReason)]`. The expansions
//! call only `::survey::__private::...`; all logic lives in the runtime.

mod args;
mod derive;
mod expand;
mod values;

use proc_macro::TokenStream;

/// Times an `async fn` that launches a model and records its outcome.
///
/// ```ignore
/// #[survey::launch(kind = "runtime_load", model = spec)]
/// async fn load(&self, spec: &LaunchSpec) -> Result<Running, LaunchError> { ... }
/// ```
///
/// - `kind`: a string literal, one of `startup`, `runtime_load`,
///   `multi_model`, `moe_fallback`, `moe_shard` (checked at compile time), or
///   any other expression of type `survey::LaunchKind` (such as
///   `"startup".parse().unwrap()`).
/// - `model`: an expression whose type implements `survey::SurveyModel`,
///   evaluated before the body runs.
///
/// The function must return `Result<T, E>` with `E: survey::FailureReason`.
/// Records a launch attempt; then on `Ok` a success, the duration and the
/// model as loaded; on `Err` a failure with `E`'s reason and the duration. A
/// launch future dropped before it finishes is recorded as a failure with
/// reason `other`.
///
/// `#[launch]`, `#[unload]` and `#[exit]` also work on the methods of an
/// `#[async_trait]` impl (with `#[async_trait]` on the impl): they instrument
/// the method's boxed future, which records exactly as an `async fn` would.
///
/// On an error in its use, each macro reports it and leaves the item as it
/// was written, so that error is the only one.
#[proc_macro_attribute]
pub fn launch(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::launch(args.into(), item.into()).into()
}

/// Records a successful unload of a model: one unload with its uptime, and
/// the model leaves the loaded set.
///
/// ```ignore
/// #[survey::unload(model = running)]
/// async fn unload(&self, running: Running) -> Result<(), UnloadError> { ... }
/// ```
///
/// The function may be `async` or not and return `()` (always a success) or
/// `Result<T, E>` (a success on `Ok`; on `Err` the model stays loaded).
#[proc_macro_attribute]
pub fn unload(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::unload(args.into(), item.into()).into()
}

/// Records an unexpected exit of a model when the function is entered: one
/// exit with the uptime when known, and the model leaves the loaded set.
///
/// ```ignore
/// #[survey::exit(model = running)]
/// fn on_backend_exit(&self, running: &Running, status: ExitStatus) { ... }
/// ```
#[proc_macro_attribute]
pub fn exit(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::exit(args.into(), item.into()).into()
}

/// Implements `survey::FailureReason` for an error enum or struct.
///
/// Every variant carries `#[survey(reason = "...")]`, one of `spawn_failed`,
/// `health_timeout`, `exited_before_healthy`, `backend_proxy_failed`,
/// `capacity_rejected`, `known_kv_cache_crash`, `mmproj_missing`, `other`
/// (checked at compile time), or `#[survey(transparent)]` to delegate to its
/// single field, whose type must implement `survey::FailureReason`. A variant
/// with neither is a compile error: there is no silent default. On a struct
/// the attribute goes on the struct itself; `#[survey(...)]` on an enum itself
/// or on a field is an error. An enum without variants needs none.
#[proc_macro_derive(FailureReason, attributes(survey))]
pub fn derive_failure_reason(item: TokenStream) -> TokenStream {
    derive::failure_reason(item.into()).into()
}
