//! Argument parsing for `#[launch(...)]`, `#[unload(...)]` and `#[exit(...)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::{Expr, LitStr, Token};

use crate::values;

mod kw {
    syn::custom_keyword!(kind);
    syn::custom_keyword!(model);
}

/// The launch kind: checked literal or run-time expression.
pub enum Kind {
    Literal(proc_macro2::Ident),
    Expr(Box<Expr>),
}

/// Parsed `key = value` arguments.
#[derive(Default)]
pub struct Args {
    pub kind: Option<(Span, Kind)>,
    pub model: Option<Expr>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::kind) {
                let key: kw::kind = input.parse()?;
                if args.kind.is_some() {
                    return Err(syn::Error::new(key.span, "duplicate `kind` argument"));
                }
                input.parse::<Token![=]>()?;
                let kind = if is_lone_literal(input) {
                    let lit: LitStr = input.parse()?;
                    Kind::Literal(values::lookup(&values::launch_kinds(), "kind", &lit)?)
                } else {
                    Kind::Expr(Box::new(input.parse()?))
                };
                args.kind = Some((key.span, kind));
            } else if lookahead.peek(kw::model) {
                let key: kw::model = input.parse()?;
                if args.model.is_some() {
                    return Err(syn::Error::new(key.span, "duplicate `model` argument"));
                }
                input.parse::<Token![=]>()?;
                args.model = Some(input.parse()?);
            } else {
                return Err(lookahead.error());
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// Whether the next value is a string literal alone (followed by `,` or the
/// end), the checked form of `kind`; `"startup".parse().unwrap()` is not.
fn is_lone_literal(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.parse::<LitStr>().is_ok() && (fork.is_empty() || fork.peek(Token![,]))
}

impl Args {
    pub fn parse_tokens(tokens: TokenStream) -> syn::Result<Args> {
        syn::parse2(tokens)
    }

    /// Rejects `kind` where it has no meaning.
    pub fn deny_kind(&self, attribute: &str) -> syn::Result<()> {
        match &self.kind {
            Some((span, _)) => Err(syn::Error::new(
                *span,
                format!("`#[survey::{attribute}]` takes no `kind`; only `model = ...`"),
            )),
            None => Ok(()),
        }
    }

    pub fn require_model(&mut self, attribute: &str) -> syn::Result<Expr> {
        self.model.take().ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                format!(
                    "`#[survey::{attribute}]` needs `model = <expr>`: a value whose type implements `survey::SurveyModel`"
                ),
            )
        })
    }
}
