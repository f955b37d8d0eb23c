//! `CalculatorServer<S>`: routes each incoming call to a method of the user's implementation.

use proc_macro2::TokenStream;
use quote::quote;
use syn::LitStr;

use crate::parse::{MethodDef, ServiceDef};

use super::args::emit_args_struct;

/// The server struct, its `Clone`, `Debug`, constructors and its `ServiceDispatch`.
pub(super) fn emit_server(service: &ServiceDef) -> TokenStream {
    let ServiceDef {
        vis, ident, name, ..
    } = service;
    let server = service.server_ident();
    let client = service.client_ident();
    let doc = format!(
        " Serves an implementation of [`{ident}`] as the service `{name}`: a tether server \
         hands each call of the service to it."
    );
    let server_name = server.to_string();
    let dispatch = emit_dispatch(service);
    quote! {
        #[doc = #doc]
        #vis struct #server<S> {
            inner: ::std::sync::Arc<S>,
        }

        impl<S> ::core::clone::Clone for #server<S> {
            fn clone(&self) -> Self {
                Self {
                    inner: ::std::sync::Arc::clone(&self.inner),
                }
            }
        }

        impl<S> ::core::fmt::Debug for #server<S> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#server_name)
                    .field("service", &#name)
                    .finish_non_exhaustive()
            }
        }

        impl<S: #ident> #server<S> {
            /// The service this server answers.
            pub const DESCRIPTOR: &'static ::tether::__private::ServiceDescriptor =
                #client::DESCRIPTOR;

            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Serves a `service` that other code shares.
            pub fn from_arc(service: ::std::sync::Arc<S>) -> Self {
                Self { inner: service }
            }
        }

        #dispatch
    }
}

/// `ServiceDispatch`: one match arm per method, by name.
///
/// The type parameter is `__S` here, not `S`: each arm defines an argument struct that names the
/// user's types, and a user type called `S` would otherwise resolve to the parameter.
fn emit_dispatch(service: &ServiceDef) -> TokenStream {
    let server = service.server_ident();
    let service_trait = &service.ident;
    let arms = service
        .methods
        .iter()
        .map(|method| dispatch_arm(service, method));
    quote! {
        impl<__S: #service_trait> ::tether::__private::ServiceDispatch for #server<__S> {
            fn descriptor(&self) -> &'static ::tether::__private::ServiceDescriptor {
                Self::DESCRIPTOR
            }

            fn dispatch<'a>(
                &'a self,
                call: ::tether::__private::Call<'a>,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<(), ::tether::__private::DispatchError>,
            > + ::core::marker::Send + 'a {
                async move {
                    match call.method() {
                        #(#arms)*
                        __other => ::core::result::Result::Err(
                            ::tether::__private::DispatchError::method_not_found(__other),
                        ),
                    }
                }
            }
        }
    }
}

fn dispatch_arm(service: &ServiceDef, method: &MethodDef) -> TokenStream {
    let service_trait = &service.ident;
    let ident = &method.ident;
    let name = LitStr::new(&method.name(), ident.span());
    let args_struct = emit_args_struct(method);
    let fields = method.args.iter().map(|arg| &arg.ident);
    let invoke = quote! {
        <__S as #service_trait>::#ident(&*self.inner #(, __args.#fields)*).await
    };
    let reply = if method.output.is_some() {
        quote! {
            let __ret = #invoke;
            call.reply(&__ret)
        }
    } else {
        quote! {
            #invoke;
            call.reply(&())
        }
    };
    quote! {
        #name => {
            #args_struct
            let __args: __Args = call.args()?;
            #reply
        }
    }
}
