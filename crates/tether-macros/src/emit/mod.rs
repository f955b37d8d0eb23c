//! Writes the code for a [`ServiceDef`]: one function per generated item.
//!
//! Generated code names everything by absolute path (`::tether::__private::…`, `::core::…`,
//! `::std::…`) so that it means the same in any module, whatever the user imported or shadowed.

mod args;
mod client;
mod descriptor;
mod server;
mod service_trait;

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemTrait, Pat, PatWild, Token, TraitItem, TraitItemFn};

use crate::parse::ServiceDef;

use self::client::emit_client;
use self::server::emit_server;
use self::service_trait::emit_trait;

/// The trait, rewritten, followed by its client and its server.
pub(crate) fn service(service: &ServiceDef) -> TokenStream {
    let service_trait = emit_trait(service);
    let client = emit_client(service);
    let server = emit_server(service);
    quote! {
        #service_trait
        #client
        #server
    }
}

/// What a trait the macro rejected expands to: the errors, and the trait as written, so that the
/// code implementing and using it still resolves and the user sees the real problem rather than a
/// cascade of "cannot find trait" errors. The attributes only this macro understands are removed
/// and `async fn` warnings silenced: the trait is only a stand-in until the errors are fixed.
pub(crate) fn failure(error: syn::Error, item: TokenStream) -> TokenStream {
    let errors = error.to_compile_error();
    let Ok(mut item) = syn::parse2::<ItemTrait>(item.clone()) else {
        return quote!(#errors #item);
    };
    for trait_item in &mut item.items {
        if let TraitItem::Fn(method) = trait_item {
            method.attrs.retain(|attr| {
                !["oneway", "idempotent", "hash_key"]
                    .iter()
                    .any(|consumed| attr.path().is_ident(consumed))
            });
            if method.default.is_none() {
                unpattern_arguments(method);
            }
        }
    }
    quote! {
        #errors
        #[allow(async_fn_in_trait)]
        #item
    }
}

/// Makes the arguments of a method without a body plain `name: Type` or `_: Type`, which is all
/// the compiler accepts there; the macro has already reported the patterns, once is enough.
fn unpattern_arguments(method: &mut TraitItemFn) {
    for input in &mut method.sig.inputs {
        let FnArg::Typed(arg) = input else { continue };
        match &mut *arg.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                pat.mutability = None;
            }
            Pat::Wild(_) => {}
            pat => {
                *pat = Pat::Wild(PatWild {
                    attrs: Vec::new(),
                    underscore_token: Token![_](pat.span()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, item: TokenStream) -> syn::File {
        let service = crate::parse::service(args, item).expect("the trait is accepted");
        syn::parse2(self::service(&service)).expect("the expansion is valid Rust")
    }

    #[test]
    fn emits_the_trait_its_client_and_its_server() {
        let file = expand(
            quote!(name = "demo.Calculator"),
            quote! {
                pub trait Calculator {
                    async fn add(&self, a: i64, b: i64) -> i64;
                    #[oneway]
                    async fn log(&self, line: String);
                }
            },
        );
        let items: Vec<_> = file
            .items
            .iter()
            .map(|item| match item {
                syn::Item::Trait(item) => format!("trait {}", item.ident),
                syn::Item::Struct(item) => format!("struct {}", item.ident),
                syn::Item::Impl(item) => {
                    let ty = &item.self_ty;
                    match &item.trait_ {
                        Some((_, path, _)) => {
                            let name = &path.segments.last().expect("a trait name").ident;
                            format!("impl {name} for {}", quote!(#ty))
                        }
                        None => format!("impl {}", quote!(#ty)),
                    }
                }
                other => panic!("unexpected item {}", quote!(#other)),
            })
            .collect();
        assert_eq!(
            items,
            [
                "trait Calculator",
                "struct CalculatorClient",
                "impl CalculatorClient",
                "struct CalculatorServer",
                "impl Clone for CalculatorServer < S >",
                "impl Debug for CalculatorServer < S >",
                "impl CalculatorServer < S >",
                "impl ServiceDispatch for CalculatorServer < __S >",
            ]
        );
        let syn::Item::Trait(service_trait) = &file.items[0] else {
            unreachable!()
        };
        let log = quote!(#service_trait).to_string();
        assert!(!log.contains("oneway"), "the attribute is consumed: {log}");
        assert!(log.contains(
            "-> impl :: core :: future :: Future < Output = () > + :: core :: marker :: Send ;"
        ));
    }

    #[test]
    fn a_rejected_trait_still_exists_without_the_macro_s_attributes() {
        let item = quote! {
            pub trait Calculator {
                #[oneway]
                fn log(&self, (a, b): (u8, u8), mut c: u8);
            }
        };
        let error = crate::parse::service(TokenStream::new(), item.clone())
            .err()
            .expect("a method that is not async is rejected");
        let expansion = failure(error, item).to_string();
        assert!(expansion.contains("compile_error"));
        assert!(!expansion.contains("oneway"), "{expansion}");
        assert!(
            expansion.contains("fn log (& self , _ : (u8 , u8) , c : u8)"),
            "{expansion}"
        );
    }
}
