//! The service trait itself, rewritten so that every method's future is `Send`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::parse::{ArgDef, MethodDef, ServiceDef};

/// The trait with `Send + Sync + 'static` added to its supertraits and each `async fn` turned into
/// a `fn` returning `impl Future + Send`: the server runs calls on a multi-threaded runtime.
/// Implementations still write `async fn`.
pub(super) fn emit_trait(service: &ServiceDef) -> TokenStream {
    let ServiceDef {
        attrs,
        vis,
        trait_token,
        ident,
        supertraits,
        ..
    } = service;
    let supertraits = supertraits.iter();
    let methods = service.methods.iter().map(trait_method);
    quote! {
        #(#attrs)*
        #vis #trait_token #ident:
            #(#supertraits +)* ::core::marker::Send + ::core::marker::Sync + 'static
        {
            #(#methods)*
        }
    }
}

fn trait_method(method: &MethodDef) -> TokenStream {
    let MethodDef {
        attrs,
        fn_token,
        ident,
        receiver,
        args,
        default,
        ..
    } = method;
    // The tokens the macro adds take the method's span, so that the compiler's messages about
    // the method (a missing doc, an unused one…) point at it rather than at the attribute.
    let span = ident.span();
    let output = method.output_type();
    let future = quote_spanned! {span=>
        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    };
    let params = args
        .iter()
        .map(|ArgDef { ident, ty, .. }| quote!(#ident: #ty));
    let body = match default {
        None => quote_spanned!(span=> ;),
        Some(block) => {
            // As `async fn` does: move every argument into the future, so that each lives until
            // the body is done, as declared (`mut` included).
            let moves = args.iter().map(
                |ArgDef {
                     mutability, ident, ..
                 }| { quote!(let #mutability #ident = #ident;) },
            );
            quote_spanned!(span=> { async move { #(#moves)* #block } })
        }
    };
    quote! {
        #(#attrs)*
        #fn_token #ident(#receiver #(, #params)*) #future #body
    }
}
