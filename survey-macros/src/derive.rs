//! `#[derive(FailureReason)]`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, LitStr, Type};

use crate::values;

mod kw {
    syn::custom_keyword!(reason);
    syn::custom_keyword!(transparent);
}

pub fn failure_reason(item: TokenStream) -> TokenStream {
    expand(item).unwrap_or_else(|e| e.into_compile_error())
}

/// What one variant (or the struct) maps to.
enum Mapping {
    Reason(Ident),
    Transparent(Span),
}

fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let name = &input.ident;
    let mut transparent_types: Vec<Type> = Vec::new();

    let body = match &input.data {
        Data::Enum(data) => {
            let mut arms = Vec::new();
            let mut errors: Option<syn::Error> = None;
            for variant in &data.variants {
                let ident = &variant.ident;
                let mapping = match parse_mapping(&variant.attrs)? {
                    Some(mapping) => mapping,
                    None => {
                        let error = syn::Error::new(
                            ident.span(),
                            format!(
                                "variant `{ident}` needs `#[survey(reason = \"...\")]` or \
                                 `#[survey(transparent)]`; valid reasons: {}",
                                reason_list()
                            ),
                        );
                        match &mut errors {
                            Some(e) => e.combine(error),
                            None => errors = Some(error),
                        }
                        continue;
                    }
                };
                arms.push(match mapping {
                    Mapping::Reason(reason) => quote! {
                        Self::#ident { .. } => ::survey::__private::FailureKind::#reason,
                    },
                    Mapping::Transparent(span) => {
                        let (pattern, ty) = single_field(&variant.fields, span)?;
                        transparent_types.push(ty);
                        quote! {
                            Self::#ident #pattern => ::survey::__private::FailureReason::failure_reason(__survey_inner),
                        }
                    }
                });
            }
            if let Some(errors) = errors {
                return Err(errors);
            }
            quote!(match self { #(#arms)* })
        }
        Data::Struct(data) => match parse_mapping(&input.attrs)? {
            Some(Mapping::Reason(reason)) => quote!(::survey::__private::FailureKind::#reason),
            Some(Mapping::Transparent(span)) => {
                let (pattern, ty) = single_field(&data.fields, span)?;
                transparent_types.push(ty);
                quote! {
                    let Self #pattern = self;
                    ::survey::__private::FailureReason::failure_reason(__survey_inner)
                }
            }
            None => {
                return Err(syn::Error::new(
                    name.span(),
                    format!(
                        "`#[derive(FailureReason)]` on a struct needs `#[survey(reason = \"...\")]` \
                         or `#[survey(transparent)]`; valid reasons: {}",
                        reason_list()
                    ),
                ));
            }
        },
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                "`#[derive(FailureReason)]` supports enums and structs, not unions",
            ));
        }
    };

    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause.cloned().unwrap_or_else(|| syn::WhereClause {
        where_token: Default::default(),
        predicates: Default::default(),
    });
    if !input.generics.params.is_empty() {
        for ty in &transparent_types {
            where_clause
                .predicates
                .push(syn::parse_quote!(#ty: ::survey::__private::FailureReason));
        }
    }
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::survey::__private::FailureReason for #name #type_generics #where_clause {
            fn failure_reason(&self) -> ::survey::__private::FailureKind {
                #body
            }
        }
    })
}

fn reason_list() -> String {
    values::FAILURE_REASONS
        .iter()
        .map(|(text, _)| *text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the `#[survey(...)]` attributes of one item.
fn parse_mapping(attrs: &[syn::Attribute]) -> syn::Result<Option<Mapping>> {
    let mut mapping: Option<Mapping> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("survey")) {
        attr.parse_args_with(|input: syn::parse::ParseStream| {
            while !input.is_empty() {
                let lookahead = input.lookahead1();
                let (span, next) = if lookahead.peek(kw::reason) {
                    let key: kw::reason = input.parse()?;
                    input.parse::<syn::Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    let variant = values::lookup(values::FAILURE_REASONS, "failure reason", &lit)?;
                    (key.span, Mapping::Reason(variant))
                } else if lookahead.peek(kw::transparent) {
                    let key: kw::transparent = input.parse()?;
                    (key.span, Mapping::Transparent(key.span))
                } else {
                    return Err(lookahead.error());
                };
                if mapping.is_some() {
                    return Err(syn::Error::new(
                        span,
                        "only one `reason = \"...\"` or `transparent` is allowed here",
                    ));
                }
                mapping = Some(next);
                if !input.is_empty() {
                    input.parse::<syn::Token![,]>()?;
                }
            }
            Ok(())
        })?;
    }
    Ok(mapping)
}

/// The pattern binding the single field as `__survey_inner`, and its type.
fn single_field(fields: &Fields, span: Span) -> syn::Result<(TokenStream, Type)> {
    let inner = format_ident!("__survey_inner");
    match fields {
        Fields::Unnamed(f) if f.unnamed.len() == 1 => {
            Ok((quote!((#inner)), f.unnamed[0].ty.clone()))
        }
        Fields::Named(f) if f.named.len() == 1 => {
            let field = f.named[0].ident.as_ref().expect("named field");
            Ok((quote!({ #field: #inner }), f.named[0].ty.clone()))
        }
        _ => Err(syn::Error::new(
            span,
            "`#[survey(transparent)]` needs exactly one field, whose type implements `survey::FailureReason`",
        )),
    }
}
