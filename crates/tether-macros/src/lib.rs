//! The `#[tether::service]` attribute macro. Use it through the `tether` crate, which re-exports it.
//!
//! The macro reads a trait in two steps: `parse` checks it and builds a model with spans (every
//! misuse is a `syn::Error` pointing at the offending tokens), then `emit` writes one item per
//! function: the trait with `Send` futures, the
//! `…Client`, the `…Server<S>` dispatcher, the service descriptor and, for each method, the
//! struct that carries its arguments over the wire.

mod emit;
mod parse;

use proc_macro::TokenStream;

/// Turns a trait into an RPC service: a typed client and a server-side dispatcher.
///
/// ```
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// pub enum CalcError { DivideByZero }
///
/// #[tether::service(name = "demo.Calculator", version = "1.0.0", group = "blue")]
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(&self, a: i64, b: i64) -> i64;
///     /// Retrying a division is harmless.
///     #[idempotent]
///     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
///     /// The caller does not wait for the server.
///     #[oneway]
///     async fn log(&self, line: String);
/// }
///
/// struct Calc;
/// impl Calculator for Calc {
///     async fn add(&self, a: i64, b: i64) -> i64 { a + b }
///     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
///         a.checked_div(b).ok_or(CalcError::DivideByZero)
///     }
///     async fn log(&self, line: String) { println!("{line}") }
/// }
///
/// // Provider side: a dispatcher to give a `tether::Server`.
/// let server = CalculatorServer::new(Calc);
/// assert_eq!(CalculatorServer::<Calc>::DESCRIPTOR.name(), "demo.Calculator");
///
/// // Consumer side: every method returns `Result<its return type, tether::Error>`.
/// async fn call(client: CalculatorClient) -> Result<(), tether::Error> {
///     let sum: i64 = client.add(1, 2).await?;
///     let quotient: Result<i64, CalcError> = client.div(1, 0).await?;
///     client.log("done".to_owned()).await?;
///     Ok(())
/// }
/// # let _ = (server, call);
/// ```
///
/// Arguments, all optional: `name` (the name the service is registered and called under;
/// default: the trait's name), `version` and `group` (default: empty).
///
/// Every method is an `async fn` on `&self`, without generic parameters, taking owned arguments
/// (`name: Type`, serde-serializable) and returning a serde-serializable type. The trait gets
/// `Send + Sync + 'static` as supertraits and its futures must be `Send`; implementations still
/// write `async fn`. Method attributes:
/// - `#[oneway]`: the caller does not wait for a reply; the method must not return a value;
/// - `#[idempotent]`: calling the method twice does no harm, so a failed call may be retried on
///   another provider;
/// - `#[hash_key(arg, …)]`: the named arguments key the `hash` and `consistent_hash` balancers,
///   so calls with equal values of them reach the same provider.
///
/// Generated, with the trait's visibility: `CalculatorClient` (`new(tether::Client)`,
/// `with_options(tether::CallOptions)`, `client()`, `DESCRIPTOR` and one method per service
/// method) and `CalculatorServer<S: Calculator>` (`new(S)`, `from_arc(Arc<S>)`, `DESCRIPTOR`).
/// Method names `new`, `with_options`, `client`, `from_arc` and `DESCRIPTOR` are therefore taken.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match parse::service(args.into(), item.clone()) {
        Ok(service) => emit::service(&service),
        Err(error) => emit::failure(error, item),
    }
    .into()
}
