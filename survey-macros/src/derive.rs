//! `#[derive(FailureReason)]`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr, Type};

use crate::values;

mod kw {
    syn::custom_keyword!(reason);
    syn::custom_keyword!(transparent);
}

pub fn failure_reason(item: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(item) {
        Ok(input) => input,
        Err(error) => return error.into_compile_error(),
    };
    expand(&input).unwrap_or_else(|error| {
        let mut tokens = error.into_compile_error();
        tokens.extend(fallback(&input));
        tokens
    })
}

/// An impl that lets the rest of the crate compile while the derive reports
/// its error, so that error is the only one.
fn fallback(input: &DeriveInput) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics ::survey::__private::FailureReason for #name #type_generics #where_clause {
            fn failure_reason(&self) -> ::survey::__private::FailureKind {
                ::core::unreachable!()
            }
        }
    }
}

/// Collects errors so that one derive reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Reports `#[survey(...)]` where it has no meaning.
fn deny_attribute(attrs: &[syn::Attribute], place: &str, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("survey")) {
        errors.push(syn::Error::new_spanned(
            attr,
            format!(
                "`#[survey(...)]` has no meaning on {place}; put it on each variant of an enum, \
                 or on a struct itself"
            ),
        ));
    }
}

fn deny_on_fields(fields: &Fields, errors: &mut Errors) {
    for field in fields {
        deny_attribute(&field.attrs, "a field", errors);
    }
}

/// What one variant (or the struct) maps to.
enum Mapping {
    Reason(Ident),
    Transparent(Span),
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let name = &input.ident;
    let mut transparent_types: Vec<Type> = Vec::new();
    let mut errors = Errors::default();

    let body = match &input.data {
        Data::Enum(data) => {
            deny_attribute(&input.attrs, "an enum", &mut errors);
            let mut arms = Vec::new();
            for variant in &data.variants {
                deny_on_fields(&variant.fields, &mut errors);
                let ident = &variant.ident;
                let mapping = match parse_mapping(&variant.attrs) {
                    Ok(Some(mapping)) => mapping,
                    Ok(None) => {
                        errors.push(syn::Error::new(
                            ident.span(),
                            format!(
                                "variant `{ident}` needs `#[survey(reason = \"...\")]` or \
                                 `#[survey(transparent)]`; valid reasons: {}",
                                values::list(&values::failure_reasons())
                            ),
                        ));
                        continue;
                    }
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                };
                match mapping {
                    Mapping::Reason(reason) => arms.push(quote! {
                        Self::#ident { .. } => ::survey::__private::FailureKind::#reason,
                    }),
                    Mapping::Transparent(span) => match single_field(&variant.fields, span) {
                        Ok((pattern, ty)) => {
                            let call = delegate(&ty);
                            transparent_types.push(ty);
                            arms.push(quote!(Self::#ident #pattern => #call,));
                        }
                        Err(error) => errors.push(error),
                    },
                }
            }
            errors.finish()?;
            if data.variants.is_empty() {
                quote!(match *self {})
            } else {
                quote!(match self { #(#arms)* })
            }
        }
        Data::Struct(data) => {
            deny_on_fields(&data.fields, &mut errors);
            let mapping = parse_mapping(&input.attrs);
            errors.finish()?;
            match mapping? {
                Some(Mapping::Reason(reason)) => quote!(::survey::__private::FailureKind::#reason),
                Some(Mapping::Transparent(span)) => {
                    let (pattern, ty) = single_field(&data.fields, span)?;
                    let call = delegate(&ty);
                    transparent_types.push(ty);
                    quote! {
                        let Self #pattern = self;
                        #call
                    }
                }
                None => {
                    return Err(syn::Error::new(
                        name.span(),
                        format!(
                            "`#[derive(FailureReason)]` on a struct needs `#[survey(reason = \"...\")]` \
                             or `#[survey(transparent)]`; valid reasons: {}",
                            values::list(&values::failure_reasons())
                        ),
                    ));
                }
            }
        }
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
            where_clause.predicates.push(
                syn::parse_quote_spanned!(ty.span()=> #ty: ::survey::__private::FailureReason),
            );
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
                    let variant =
                        values::lookup(&values::failure_reasons(), "failure reason", &lit)?;
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

/// The reason of the transparent field `__survey_inner`, spanned at its
/// type, so a type without `FailureReason` is reported there.
fn delegate(ty: &Type) -> TokenStream {
    // Located at the type, resolved at the call site like its binding.
    let inner = proc_macro2::Ident::new(
        "__survey_inner",
        ty.span().resolved_at(proc_macro2::Span::call_site()),
    );
    quote_spanned! {ty.span()=>
        <#ty as ::survey::__private::FailureReason>::failure_reason(#inner)
    }
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
