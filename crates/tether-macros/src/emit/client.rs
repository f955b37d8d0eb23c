//! `CalculatorClient`: one async method per service method, each a remote call.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::parse::{ArgDef, MethodDef, ServiceDef};

use super::args::emit_args_struct;
use super::descriptor::emit_descriptor;

/// The client struct and its inherent impl, with the trait's visibility.
pub(super) fn emit_client(service: &ServiceDef) -> TokenStream {
    let ServiceDef {
        vis, ident, name, ..
    } = service;
    let client = service.client_ident();
    let doc = format!(
        " A client of the [`{ident}`] service `{name}`: each method calls a provider and \
         returns its reply, or the [`tether::Error`] that prevented it."
    );
    let new_doc = format!(" A client that calls `{name}` through `client`.");
    let descriptor = emit_descriptor(service);
    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| client_method(index, method));
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            stub: ::tether::__private::Stub,
        }

        impl #client {
            /// The service this client calls.
            pub const DESCRIPTOR: &'static ::tether::__private::ServiceDescriptor = #descriptor;

            #[doc = #new_doc]
            pub fn new(client: ::tether::Client) -> Self {
                Self {
                    stub: ::tether::__private::Stub::new(client, Self::DESCRIPTOR),
                }
            }

            /// This client with other call options (timeout…) for the calls made through it.
            pub fn with_options(&self, options: ::tether::CallOptions) -> Self {
                Self {
                    stub: self.stub.with_options(options),
                }
            }

            /// The underlying client.
            pub fn client(&self) -> &::tether::Client {
                self.stub.client()
            }

            #(#methods)*
        }
    }
}

/// The call of the method at `index` in the descriptor: the method's own result, wrapped in the
/// `tether::Error` of the call; a `Result` the method returns reaches the caller unchanged inside.
fn client_method(index: usize, method: &MethodDef) -> TokenStream {
    let ident = &method.ident;
    let docs: Vec<_> = method.docs().collect();
    let default_doc = docs.is_empty().then(|| {
        let doc = format!(" Calls `{}` on a provider of the service.", method.name());
        quote!(#[doc = #doc])
    });
    let params = method
        .args
        .iter()
        .map(|ArgDef { ident, ty, .. }| quote!(#ident: #ty));
    let fields = method.args.iter().map(|arg| &arg.ident);
    let args_struct = emit_args_struct(method);
    let index = Literal::usize_unsuffixed(index);
    let output = method.output_type();
    // With `#[hash_key(..)]`, the named arguments key the hash balancers, hashed the same way
    // in every process.
    let stub = if method.hash_key.is_empty() {
        quote!(self.stub)
    } else {
        let keys = &method.hash_key;
        quote!(self.stub.with_hash_key(::tether::__private::hash_key(&(#(&#keys,)*))))
    };
    let call = if method.oneway {
        quote!(#stub.oneway::<__Args>)
    } else {
        quote!(#stub.call::<__Args, #output>)
    };
    quote! {
        #(#docs)*
        #default_doc
        pub async fn #ident(&self #(, #params)*)
            -> ::core::result::Result<#output, ::tether::Error>
        {
            #args_struct
            #call(&Self::DESCRIPTOR.methods()[#index], &__Args { #(#fields),* }).await
        }
    }
}
