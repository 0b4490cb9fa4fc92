//! Expansion of `#[launch]`, `#[unload]` and `#[exit]`.
//!
//! The user's signature is kept verbatim. The body moves into an
//! `async move` block (or a `move` closure for a synchronous unload) in its
//! own scope, preceded by a never-taken "fake return" of the declared return
//! type so that type errors in the body point at the user's lines. Generated
//! names start with `__survey_`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{ItemFn, ReturnType, Type};

use crate::args::{Args, Kind};

pub fn launch(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_launch(args, item).unwrap_or_else(|e| e.into_compile_error())
}

pub fn unload(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_unload(args, item).unwrap_or_else(|e| e.into_compile_error())
}

pub fn exit(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_exit(args, item).unwrap_or_else(|e| e.into_compile_error())
}

fn expand_launch(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut args = Args::parse_tokens(args)?;
    let function: ItemFn = syn::parse2(item)?;
    let kind = match args.kind.take() {
        Some((_, Kind::Literal(variant))) => quote!(::survey::__private::LaunchKind::#variant),
        Some((_, Kind::Expr(expr))) => {
            quote_spanned!(expr.span()=> ::survey::__private::launch_kind(#expr))
        }
        None => {
            return Err(syn::Error::new(
                Span::call_site(),
                "`#[survey::launch]` needs `kind = \"...\"`: one of startup, runtime_load, \
                 multi_model, moe_fallback, moe_shard, or an expression of type `survey::LaunchKind`",
            ));
        }
    };
    let model = args.require_model("launch")?;
    if function.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            function.sig.fn_token.span,
            "`#[survey::launch]` must be placed on an `async fn`",
        ));
    }
    let return_type = match &function.sig.output {
        ReturnType::Type(_, ty) if matches!(**ty, Type::Path(_)) => ty.clone(),
        ReturnType::Type(_, ty) => {
            return Err(syn::Error::new_spanned(
                ty,
                "`#[survey::launch]` functions must return `Result<T, E>` where `E: survey::FailureReason`",
            ));
        }
        ReturnType::Default => {
            return Err(syn::Error::new(
                function.sig.ident.span(),
                "`#[survey::launch]` functions must return `Result<T, E>` where `E: survey::FailureReason`",
            ));
        }
    };

    let mut function = function;
    let body = wrapped_body(&function.sig.output, &function.block, true);
    let start = quote_spanned!(model.span()=>
        ::survey::__private::LaunchGuard::start(#kind, &(#model))
    );
    let finish = quote_spanned!(return_type.span()=>
        __survey_launch.finish(&__survey_result)
    );
    replace_body(
        &mut function,
        quote! {
            let __survey_launch = #start;
            let __survey_result = #body;
            #finish;
            __survey_result
        },
    )?;
    Ok(quote!(#function))
}

fn expand_unload(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut args = Args::parse_tokens(args)?;
    args.deny_kind("unload")?;
    let model = args.require_model("unload")?;
    let mut function: ItemFn = syn::parse2(item)?;
    let is_async = function.sig.asyncness.is_some();
    let body = wrapped_body(&function.sig.output, &function.block, is_async);
    let return_span = match &function.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => function.sig.ident.span(),
    };
    let start = quote_spanned!(model.span()=>
        ::survey::__private::UnloadGuard::start(&(#model))
    );
    let finish = quote_spanned!(return_span=>
        __survey_unload.finish(&__survey_result)
    );
    replace_body(
        &mut function,
        quote! {
            let __survey_unload = #start;
            #[allow(clippy::redundant_closure_call)]
            let __survey_result = #body;
            #finish;
            __survey_result
        },
    )?;
    Ok(quote!(#function))
}

fn expand_exit(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut args = Args::parse_tokens(args)?;
    args.deny_kind("exit")?;
    let model = args.require_model("exit")?;
    let mut function: ItemFn = syn::parse2(item)?;
    let record: syn::Stmt = syn::parse2(quote_spanned!(model.span()=>
        ::survey::__private::record_exit(&(#model));
    ))?;
    function.block.stmts.insert(0, record);
    Ok(quote!(#function))
}

/// Replaces the statements of `function`'s body, keeping the item and its
/// braces as the user wrote them, so lints on the function (`dead_code`, ...)
/// still reach the user.
fn replace_body(function: &mut ItemFn, statements: TokenStream) -> syn::Result<()> {
    function.block.stmts = syn::parse::Parser::parse2(syn::Block::parse_within, statements)?;
    Ok(())
}

/// The user's block as `async move { .. }.await` or `(move || { .. })()`,
/// with a fake return edge of the declared type.
fn wrapped_body(output: &ReturnType, block: &syn::Block, is_async: bool) -> TokenStream {
    let declared = match output {
        ReturnType::Type(_, ty) => {
            let mut ty = (**ty).clone();
            ImplTraitEraser.visit_type_mut(&mut ty);
            quote!(#ty)
        }
        ReturnType::Default => quote!(()),
    };
    let stmts = &block.stmts;
    let inner = quote! {
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let __survey_fake_return: #declared = loop {};
            return __survey_fake_return;
        }
        #(#stmts)*
    };
    if is_async {
        quote!(async move { #inner }.await)
    } else {
        quote!((move || { #inner })())
    }
}

/// Replaces `impl Trait` with `_`, which a `let` type annotation accepts.
struct ImplTraitEraser;

impl VisitMut for ImplTraitEraser {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](impl_trait.impl_token.span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}
