//! Reads the attribute arguments and the trait into a [`ServiceDef`], checking every rule.
//!
//! Every problem is reported, each as a `syn::Error` on the tokens at fault, combined into one:
//! a user fixes a trait in one round instead of one compile per mistake.

mod args;
mod method;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Block, Ident, Item, ItemTrait, Receiver, Token, TraitItem, Type, TypeParamBound,
    Visibility,
};

/// A service trait that passed every check: what the emitters need, with the user's spans.
pub(crate) struct ServiceDef {
    /// The trait's attributes (docs…), kept on the rewritten trait.
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) trait_token: Token![trait],
    pub(crate) ident: Ident,
    /// The supertraits the user wrote; `Send + Sync + 'static` are added when emitting.
    pub(crate) supertraits: Punctuated<TypeParamBound, Token![+]>,
    /// The name the service is registered and called under.
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) group: String,
    /// In declaration order, which is the order of the descriptor's methods: clients call a
    /// method by its index there.
    pub(crate) methods: Vec<MethodDef>,
}

/// One `async fn` of the service trait.
pub(crate) struct MethodDef {
    /// The attributes kept on the trait's method: all but `#[oneway]`, `#[idempotent]` and
    /// `#[hash_key]`.
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) fn_token: Token![fn],
    pub(crate) ident: Ident,
    /// `&self`, as written.
    pub(crate) receiver: Receiver,
    pub(crate) args: Vec<ArgDef>,
    /// The return type; `None` for `()`, written or not.
    pub(crate) output: Option<Type>,
    /// A default body, if the trait provides one.
    pub(crate) default: Option<Block>,
    pub(crate) oneway: bool,
    pub(crate) idempotent: bool,
    /// The arguments `#[hash_key(..)]` names: the hash balancers' key; empty without it.
    pub(crate) hash_key: Vec<Ident>,
}

/// One `name: Type` argument of a method.
pub(crate) struct ArgDef {
    /// `mut name`: only meaningful in a default body.
    pub(crate) mutability: Option<Token![mut]>,
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

impl ServiceDef {
    /// `CalculatorClient`, spanned at the trait's name.
    pub(crate) fn client_ident(&self) -> Ident {
        quote::format_ident!("{}Client", self.ident, span = self.ident.span())
    }

    /// `CalculatorServer`, spanned at the trait's name.
    pub(crate) fn server_ident(&self) -> Ident {
        quote::format_ident!("{}Server", self.ident, span = self.ident.span())
    }
}

impl MethodDef {
    /// The method's name on the wire: its identifier without any `r#`.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }

    /// The doc comments, which the client's method copies.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|attr| attr.path().is_ident("doc"))
    }

    /// The return type, `()` included.
    pub(crate) fn output_type(&self) -> TokenStream {
        match &self.output {
            Some(ty) => ty.to_token_stream(),
            None => quote!(()),
        }
    }
}

/// Inherent items of the generated types, by name, with the type that has them: a service method
/// of the same name would clash with them. The server has no item per service method yet; its
/// names are reserved all the same, so that no service has to rename a method when it gets some.
const GENERATED_ITEMS: &[(&str, &str)] = &[
    ("new", "Client"),
    ("with_options", "Client"),
    ("client", "Client"),
    ("DESCRIPTOR", "Client"),
    ("from_arc", "Server"),
];

/// Parses `#[tether::service(args)]` applied to `item`.
pub(crate) fn service(args: TokenStream, item: TokenStream) -> syn::Result<ServiceDef> {
    let mut errors = Errors::default();
    let args = errors.ok(args::service_args(args)).unwrap_or_default();
    let Item::Trait(item) = syn::parse2(item)? else {
        let not_a_trait = syn::Error::new(
            proc_macro2::Span::call_site(),
            "`#[tether::service]` applies to a trait",
        );
        return Err(errors.finish_with(not_a_trait));
    };
    check_trait(&item, &mut errors);

    let mut methods = Vec::new();
    for trait_item in &item.items {
        match trait_item {
            TraitItem::Fn(method_item) => methods.extend(method::method(method_item, &mut errors)),
            TraitItem::Type(ty) => errors.error(
                ty,
                "associated types are not supported: a service trait contains only methods",
            ),
            TraitItem::Const(constant) => errors.error(
                constant,
                "associated constants are not supported: a service trait contains only methods",
            ),
            TraitItem::Macro(mac) => errors.error(
                mac,
                "macros are not supported here: a service trait lists its methods explicitly",
            ),
            other => errors.error(other, "a service trait contains only methods"),
        }
    }
    check_method_names(&item.ident, &methods, &mut errors);

    let service = ServiceDef {
        name: match args.name {
            Some(name) => name.value(),
            None => item.ident.unraw().to_string(),
        },
        version: args.version.map(|v| v.value()).unwrap_or_default(),
        group: args.group.map(|g| g.value()).unwrap_or_default(),
        attrs: item.attrs,
        vis: item.vis,
        trait_token: item.trait_token,
        ident: item.ident,
        supertraits: item.supertraits,
        methods,
    };
    errors.finish(service)
}

fn check_trait(item: &ItemTrait, errors: &mut Errors) {
    if let Some(unsafety) = &item.unsafety {
        errors.error(unsafety, "a service trait cannot be `unsafe`");
    }
    if let Some(auto_token) = &item.auto_token {
        errors.error(auto_token, "a service trait cannot be an `auto` trait");
    }
    if !item.generics.params.is_empty() {
        errors.error(
            &item.generics,
            "a service trait cannot have generic parameters: the client and the server need one concrete signature per method",
        );
    }
    if let Some(where_clause) = &item.generics.where_clause {
        errors.error(where_clause, "a service trait cannot have a `where` clause");
    }
}

/// Rejects a method name used twice, or taken by an item of the generated client or server.
fn check_method_names(service: &Ident, methods: &[MethodDef], errors: &mut Errors) {
    let mut seen = HashSet::new();
    for method in methods {
        let name = method.name();
        if let Some((_, suffix)) = GENERATED_ITEMS.iter().find(|(item, _)| *item == name) {
            errors.error(
                &method.ident,
                format_args!(
                    "method name `{name}` clashes with a generated item of `{}{suffix}`; rename the method",
                    service.unraw()
                ),
            );
        }
        if !seen.insert(name) {
            errors.error(
                &method.ident,
                "a service method with this name is already declared",
            );
        }
    }
}

/// The problems found so far, combined into one `syn::Error`.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// A problem with `tokens`, reported on their span.
    fn error(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// All the problems: those found so far, then `last`.
    fn finish_with(self, last: syn::Error) -> syn::Error {
        match self.0 {
            Some(mut errors) => {
                errors.combine(last);
                errors
            }
            None => last,
        }
    }

    /// `value`, if no problem was found.
    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}
