//! The parser on traits written with `quote!`: what it reads, and every rejection it reports.

use super::*;

fn parse(args: TokenStream, item: TokenStream) -> ServiceDef {
    match service(args, item) {
        Ok(service) => service,
        Err(error) => panic!("rejected: {error}"),
    }
}

/// The messages of every error reported, in order.
fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
    match service(args, item) {
        Ok(_) => panic!("accepted"),
        Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
    }
}

fn calculator() -> TokenStream {
    quote! {
        /// A calculator.
        pub trait Calculator {
            /// docs are kept
            async fn add(&self, a: i64, b: i64) -> i64;
            #[idempotent]
            async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
            #[oneway]
            async fn log(&self, mut line: String) -> ();
            async fn ping(&self) {}
        }
    }
}

#[test]
fn reads_the_arguments_and_every_method_in_order() {
    let args = quote!(name = "demo.Calculator", version = "1.0.0", group = "blue");
    let service = parse(args, calculator());
    assert_eq!(
        (
            service.name.as_str(),
            service.version.as_str(),
            service.group.as_str()
        ),
        ("demo.Calculator", "1.0.0", "blue")
    );
    assert_eq!(service.ident, "Calculator");
    assert_eq!(service.client_ident(), "CalculatorClient");
    assert_eq!(service.server_ident(), "CalculatorServer");
    assert_eq!(service.attrs.len(), 1, "the trait's doc is kept");

    let names: Vec<_> = service.methods.iter().map(MethodDef::name).collect();
    assert_eq!(names, ["add", "div", "log", "ping"]);
    let flags: Vec<_> = service
        .methods
        .iter()
        .map(|m| (m.oneway, m.idempotent))
        .collect();
    assert_eq!(
        flags,
        [(false, false), (false, true), (true, false), (false, false)]
    );

    let [add, div, log, ping] = &service.methods[..] else {
        unreachable!()
    };
    assert_eq!(add.docs().count(), 1);
    assert_eq!(
        add.args
            .iter()
            .map(|a| a.ident.to_string())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(add.output_type().to_string(), "i64");
    assert_eq!(
        div.output_type().to_string(),
        quote!(Result<i64, CalcError>).to_string()
    );
    assert!(div.attrs.is_empty(), "`#[idempotent]` is consumed");
    assert!(log.attrs.is_empty(), "`#[oneway]` is consumed");
    assert!(log.output.is_none(), "`-> ()` is no return value");
    assert!(log.args[0].mutability.is_some());
    assert!(ping.args.is_empty() && ping.output.is_none() && ping.default.is_some());
}

#[test]
fn defaults_to_the_trait_name_without_version_or_group() {
    let service = parse(
        TokenStream::new(),
        quote!(
            trait r#Plain {
                async fn r#type(&self);
            }
        ),
    );
    assert_eq!(service.name, "Plain");
    assert_eq!((service.version.as_str(), service.group.as_str()), ("", ""));
    assert_eq!(service.methods[0].name(), "type");
}

#[test]
fn rejects_bad_attribute_arguments() {
    let item = quote!(
        trait S {}
    );
    assert_eq!(
        errors(quote!(timeout = "5s"), item.clone()),
        ["unknown argument `timeout`; expected `name`, `version` or `group`"]
    );
    assert_eq!(
        errors(quote!(name = "a", name = "b"), item.clone()),
        ["`name` is given twice"]
    );
    assert_eq!(
        errors(quote!(name = ""), item.clone()),
        ["the service name cannot be empty"]
    );
    assert_eq!(
        errors(quote!(version = 1), item),
        ["expected string literal"]
    );
}

#[test]
fn rejects_what_is_not_a_plain_trait() {
    assert_eq!(
        errors(
            TokenStream::new(),
            quote!(
                struct S;
            )
        ),
        ["`#[tether::service]` applies to a trait"]
    );
    let messages = errors(
        TokenStream::new(),
        quote! {
            unsafe trait S<T> where T: Clone {
                type Item;
                const N: usize;
                items!();
            }
        },
    );
    let expected = [
        "a service trait cannot be `unsafe`",
        "a service trait cannot have generic parameters",
        "a service trait cannot have a `where` clause",
        "associated types are not supported",
        "associated constants are not supported",
        "macros are not supported here",
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for (message, expected) in messages.iter().zip(expected) {
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[test]
fn reports_every_bad_method_at_once() {
    let messages = errors(
        TokenStream::new(),
        quote! {
            trait S {
                fn not_async(&self);
                async fn type_param<T>(&self, t: T);
                async fn lifetime<'a>(&self);
                async fn where_clause(&self) where Self: Sized;
                async fn by_value(self);
                async fn mutable(&mut self);
                async fn no_receiver();
                async fn typed_receiver(self: Box<Self>);
                async fn borrowed(&self, name: &str);
                async fn nested_borrow(&self, names: Vec<&'static str>);
                async fn returns_borrow(&self) -> &'static str;
                async fn pattern(&self, (a, b): (u8, u8));
                async fn impl_trait(&self, a: impl Clone);
                async fn uses_self(&self) -> Option<Self>;
                #[oneway]
                async fn oneway_returns(&self) -> u8;
                #[oneway(true)]
                async fn oneway_arguments(&self);
                #[idempotent]
                #[idempotent]
                async fn twice(&self);
                #[cfg(test)]
                async fn configured(&self);
                async fn new(&self);
                async fn from_arc(&self);
                async fn twice(&self);
            }
        },
    );
    let expected = [
        "service methods must be `async`: write `async fn not_async`",
        "service methods cannot have type parameters",
        "service methods cannot have lifetime parameters",
        "service methods cannot have a `where` clause",
        "service methods take `&self`, not `self`",
        "service methods take `&self`, not `&mut self`",
        "service methods take `&self`: write `(&self)`",
        "service methods take `&self`, with no explicit type",
        "arguments must be owned types",
        "arguments must be owned types",
        "return types must be owned types",
        "arguments must be `name: Type`",
        "`impl Trait` is not supported here",
        "`Self` cannot appear in a service method's signature",
        "`#[oneway]` methods cannot return a value",
        "`#[oneway]` takes no arguments",
        "`#[idempotent]` is given twice",
        "`#[cfg]` is not supported on service methods",
        "method name `new` clashes with a generated item of `SClient`",
        "method name `from_arc` clashes with a generated item of `SServer`",
        "a service method with this name is already declared",
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for (message, expected) in messages.iter().zip(expected) {
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}
