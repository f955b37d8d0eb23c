//! The struct that carries a method's arguments over the wire.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::parse::{ArgDef, MethodDef};

/// `struct __Args { a: i64, b: i64 }`, serializable through tether's serde.
///
/// The client serializes it and the server deserializes it, so both sides use this one
/// definition, emitted inside the client's method and inside the server's match arm: an item in a
/// function body still names the types of the enclosing module, as the user wrote them.
pub(super) fn emit_args_struct(method: &MethodDef) -> TokenStream {
    let fields = method
        .args
        .iter()
        .map(|ArgDef { ident, ty, .. }| quote!(#ident: #ty));
    // Spanned at the method: where serde's derives report an argument type that is not
    // serializable, the error then names the method instead of the attribute.
    quote_spanned! {method.ident.span()=>
        #[derive(
            ::tether::__private::serde::Serialize,
            ::tether::__private::serde::Deserialize,
        )]
        #[serde(crate = "::tether::__private::serde")]
        struct __Args {
            #(#fields,)*
        }
    }
}
