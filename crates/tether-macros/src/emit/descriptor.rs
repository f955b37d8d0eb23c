//! The service descriptor: name, version, group and the methods in declaration order.

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::ServiceDef;

/// An expression of type `&'static ServiceDescriptor`, built by const fns into statics: one
/// descriptor per service, with one address, whichever generated type hands it out.
pub(super) fn emit_descriptor(service: &ServiceDef) -> TokenStream {
    let ServiceDef {
        name,
        version,
        group,
        ..
    } = service;
    let count = service.methods.len();
    let methods = service.methods.iter().map(|method| {
        let name = method.name();
        let oneway = method.oneway.then(|| quote!(.oneway()));
        let idempotent = method.idempotent.then(|| quote!(.idempotent()));
        quote!(::tether::__private::MethodDescriptor::new(#name) #oneway #idempotent)
    });
    quote! {{
        static METHODS: [::tether::__private::MethodDescriptor; #count] = [#(#methods),*];
        static SERVICE: ::tether::__private::ServiceDescriptor =
            ::tether::__private::ServiceDescriptor::new(#name, #version, #group, &METHODS);
        &SERVICE
    }}
}
