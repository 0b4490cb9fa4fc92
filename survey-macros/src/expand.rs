//! Expansion of `#[launch]`, `#[unload]` and `#[exit]`.
//!
//! The user's signature is kept verbatim. The body moves into an
//! `async move` block (or a `move` closure for a synchronous unload) in its
//! own scope, preceded by a never-taken "fake return" of the declared return
//! type so that type errors in the body point at the user's lines. Generated
//! names start with `__survey_`. The expansion carries no lint attributes, so
//! a crate's `#![forbid(...)]` never clashes with it.
//!
//! A method of an `#[async_trait]` impl reaches these macros already
//! rewritten into a plain `fn` returning
//! `Pin<Box<dyn Future<Output = T> + ...>>` whose body ends in
//! `Box::pin(async move { .. })`; the macros then instrument that async
//! block, with `T` as the declared return type.
//!
//! On an error the user's item is emitted unchanged beside it, so the error
//! is the only one.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, GenericArgument, ItemFn, PathArguments, ReturnType, Stmt, Type, TypeParamBound};

use crate::args::{Args, Kind};

pub fn launch(args: TokenStream, item: TokenStream) -> TokenStream {
    or_item(expand_launch(args.clone(), item.clone()), &args, item)
}

pub fn unload(args: TokenStream, item: TokenStream) -> TokenStream {
    or_item(expand_unload(args.clone(), item.clone()), &args, item)
}

pub fn exit(args: TokenStream, item: TokenStream) -> TokenStream {
    or_item(expand_exit(args.clone(), item.clone()), &args, item)
}

/// The expansion, or the error followed by the user's item as written.
///
/// The attribute's `model = ...` no longer uses the parameters it named, so
/// the kept item begins with `let _ = &(model);`: no "unused variable"
/// warning (an error under `deny(warnings)`) joins ours. The crate does not
/// compile anyway, so nothing runs it.
fn or_item(
    expansion: syn::Result<TokenStream>,
    args: &TokenStream,
    item: TokenStream,
) -> TokenStream {
    expansion.unwrap_or_else(|error| {
        let mut tokens = error.into_compile_error();
        match (model_argument(args), syn::parse2::<ItemFn>(item.clone())) {
            (Some(model), Ok(mut function)) => {
                let uses = quote_spanned!(model.span()=> let _ = &(#model););
                if let Ok(stmt) = syn::parse2::<Stmt>(uses) {
                    function.block.stmts.insert(0, stmt);
                }
                tokens.extend(quote!(#function));
            }
            _ => tokens.extend(item),
        }
        tokens
    })
}

/// The expression of `model = ...` in the attribute's arguments, found even
/// when other arguments are wrong: the arguments read as `key = value`
/// pairs, with no check of keys or values.
fn model_argument(args: &TokenStream) -> Option<Expr> {
    use syn::punctuated::Punctuated;
    let pairs = syn::parse::Parser::parse2(
        Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated,
        args.clone(),
    )
    .ok()?;
    pairs
        .into_iter()
        .find(|pair| pair.path.is_ident("model"))
        .map(|pair| pair.value)
}

const LAUNCH_RETURN: &str =
    "`#[survey::launch]` functions must return `Result<T, E>` where `E: survey::FailureReason`";

fn expand_launch(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut args = Args::parse_tokens(args)?;
    let mut function: ItemFn = syn::parse2(item)?;
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
    let is_async = function.sig.asyncness.is_some();
    let fn_span = function.sig.fn_token.span;
    let ident_span = function.sig.ident.span();
    let body = Body::of(&mut function);
    let declared = match &body {
        Body::AsyncTrait { output, .. } => (*output).clone(),
        Body::Function { .. } if !is_async => {
            return Err(syn::Error::new(
                fn_span,
                "`#[survey::launch]` must be placed on an `async fn`",
            ));
        }
        Body::Function { output, .. } => match output {
            ReturnType::Type(_, ty) => (**ty).clone(),
            ReturnType::Default => return Err(syn::Error::new(ident_span, LAUNCH_RETURN)),
        },
    };
    match ungrouped(&declared) {
        Type::Path(_) => {}
        // `#[async_trait]` writes `Output = ()` for a function without a
        // return type.
        Type::Tuple(unit) if unit.elems.is_empty() && matches!(body, Body::AsyncTrait { .. }) => {
            return Err(syn::Error::new(ident_span, LAUNCH_RETURN));
        }
        _ => return Err(syn::Error::new_spanned(&declared, LAUNCH_RETURN)),
    }

    let start = quote_spanned!(model.span()=>
        ::survey::__private::LaunchGuard::start(#kind, &(#model))
    );
    guard(body.stmts(), &declared, true, start)?;
    Ok(quote!(#function))
}

fn expand_unload(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut args = Args::parse_tokens(args)?;
    args.deny_kind("unload")?;
    let model = args.require_model("unload")?;
    let mut function: ItemFn = syn::parse2(item)?;
    let is_async = function.sig.asyncness.is_some();
    let ident_span = function.sig.ident.span();
    let body = Body::of(&mut function);
    let (declared, is_async) = match &body {
        Body::AsyncTrait { output, .. } => ((*output).clone(), true),
        Body::Function { output, .. } => match output {
            ReturnType::Type(_, ty) => ((**ty).clone(), is_async),
            ReturnType::Default => (syn::parse_quote_spanned!(ident_span=> ()), is_async),
        },
    };
    let start = quote_spanned!(model.span()=>
        ::survey::__private::UnloadGuard::start(&(#model))
    );
    guard(body.stmts(), &declared, is_async, start)?;
    Ok(quote!(#function))
}

/// Replaces `stmts` with: the guard `start` makes, the wrapped body, the
/// guard's `finish` with the body's result, and that result.
fn guard(
    stmts: &mut Vec<Stmt>,
    declared: &Type,
    is_async: bool,
    start: TokenStream,
) -> syn::Result<()> {
    // Spanned at the declared type, so an outcome the guard cannot take (a
    // launch not returning a `Result` with a `FailureReason` error) is
    // reported there.
    let finish = quote_spanned!(declared.span()=>
        __survey_guard.finish(&__survey_result)
    );
    let wrapped = wrapped_body(declared, stmts, is_async);
    *stmts = parse_stmts(quote! {
        let __survey_guard = #start;
        let __survey_result = #wrapped;
        #finish;
        __survey_result
    })?;
    Ok(())
}

fn expand_exit(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut args = Args::parse_tokens(args)?;
    args.deny_kind("exit")?;
    let model = args.require_model("exit")?;
    let mut function: ItemFn = syn::parse2(item)?;
    let record: Stmt = syn::parse2(quote_spanned!(model.span()=>
        ::survey::__private::record_exit(&(#model));
    ))?;
    Body::of(&mut function).stmts().insert(0, record);
    Ok(quote!(#function))
}

/// Where the user's statements are: the function's own block (kept with its
/// braces as the user wrote them, so lints on the function such as
/// `dead_code` still reach the user), or the async block of an
/// `#[async_trait]` method.
enum Body<'a> {
    Function {
        stmts: &'a mut Vec<Stmt>,
        output: &'a ReturnType,
    },
    AsyncTrait {
        stmts: &'a mut Vec<Stmt>,
        /// `T` of the declared `Pin<Box<dyn Future<Output = T> + ...>>`.
        output: &'a Type,
    },
}

impl<'a> Body<'a> {
    /// Only what `#[async_trait]` generates counts as its body: a block of
    /// the one `Box::pin(async move { .. })` statement, in a function
    /// generic over `'async_trait`. A hand-written function returning a
    /// boxed future is instrumented as the function it is.
    fn of(function: &'a mut ItemFn) -> Body<'a> {
        let ItemFn { sig, block, .. } = function;
        let async_trait_lifetime = sig
            .generics
            .lifetimes()
            .any(|param| param.lifetime.ident == "async_trait");
        if sig.asyncness.is_none()
            && async_trait_lifetime
            && block.stmts.len() == 1
            && let ReturnType::Type(_, ty) = &sig.output
            && let Some(output) = future_output(ty)
            && block.stmts.last_mut().and_then(boxed_async).is_some()
        {
            let inner = block.stmts.last_mut().and_then(boxed_async);
            return Body::AsyncTrait {
                stmts: &mut inner.expect("checked above").stmts,
                output,
            };
        }
        Body::Function {
            stmts: &mut block.stmts,
            output: &sig.output,
        }
    }

    fn stmts(self) -> &'a mut Vec<Stmt> {
        match self {
            Body::Function { stmts, .. } | Body::AsyncTrait { stmts, .. } => stmts,
        }
    }
}

/// The block of `async move { .. }` in a trailing `Box::pin(async move { .. })`,
/// whatever the path's prefix.
fn boxed_async(stmt: &mut Stmt) -> Option<&mut syn::Block> {
    let Stmt::Expr(Expr::Call(call), None) = stmt else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let mut segments = func.path.segments.iter().rev();
    let is_box_pin = matches!(
        (segments.next(), segments.next()),
        (Some(pin), Some(boxed)) if pin.ident == "pin" && boxed.ident == "Box"
    );
    if !is_box_pin || call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut() {
        Some(Expr::Async(inner)) if inner.capture.is_some() => Some(&mut inner.block),
        _ => None,
    }
}

/// `T` of `Pin<Box<dyn Future<Output = T> + ...>>`, whatever the paths'
/// prefixes.
fn future_output(ty: &Type) -> Option<&Type> {
    let boxed = single_type_argument(ty, "Pin")?;
    let Type::TraitObject(object) = single_type_argument(boxed, "Box")? else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last()?;
        if future.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(arguments) = &future.arguments else {
            return None;
        };
        arguments.args.iter().find_map(|argument| match argument {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// `A` of `...::name<A>`.
fn single_type_argument<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(path) = ungrouped(ty) else {
        return None;
    };
    let segment = path.path.segments.last()?;
    if segment.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    match arguments.args.first()? {
        GenericArgument::Type(ty) if arguments.args.len() == 1 => Some(ty),
        _ => None,
    }
}

/// `ty` without the invisible groups a `macro_rules!` `$ty` leaves, or
/// parentheses.
fn ungrouped(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungrouped(&group.elem),
        Type::Paren(paren) => ungrouped(&paren.elem),
        other => other,
    }
}

fn parse_stmts(tokens: TokenStream) -> syn::Result<Vec<Stmt>> {
    syn::parse::Parser::parse2(syn::Block::parse_within, tokens)
}

/// The user's statements as `async move { .. }.await` or
/// `__private::run(move || { .. })`, with a fake return edge of the
/// declared type: `if false { return fake_return::<T>(); }` diverges nowhere
/// and so needs no lint allowance.
fn wrapped_body(declared: &Type, stmts: &[Stmt], is_async: bool) -> TokenStream {
    let mut declared = declared.clone();
    ImplTraitEraser.visit_type_mut(&mut declared);
    let inner = quote! {
        if false {
            return ::survey::__private::fake_return::<#declared>();
        }
        #(#stmts)*
    };
    if is_async {
        quote!(async move { #inner }.await)
    } else {
        quote!(::survey::__private::run(move || { #inner }))
    }
}

/// Replaces `impl Trait` with `_`, which a turbofish accepts.
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
