//! One method of the trait: its attributes, receiver, arguments and return type.

use quote::quote;
use syn::{
    Attribute, FnArg, GenericArgument, GenericParam, Ident, Pat, PatType, PathArguments, Receiver,
    ReturnType, Token, TraitItemFn, Type, punctuated::Punctuated,
};

use super::{ArgDef, Errors, MethodDef};

/// Checks one method of the trait; `None` when it has no `&self` to model it with (the reasons are
/// in `errors`, as are those of any other problem).
pub(super) fn method(item: &TraitItemFn, errors: &mut Errors) -> Option<MethodDef> {
    let sig = &item.sig;
    let (attrs, oneway, idempotent) = method_attrs(&item.attrs, errors);
    let hash_key = hash_key(&item.attrs, errors);

    if let Some(constness) = &sig.constness {
        errors.error(constness, "service methods cannot be `const`");
    }
    if sig.asyncness.is_none() {
        let (fn_token, ident) = (&sig.fn_token, &sig.ident);
        errors.error(
            quote!(#fn_token #ident),
            format_args!("service methods must be `async`: write `async fn {ident}`"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.error(unsafety, "service methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.error(abi, "service methods cannot have an `extern` ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.error(variadic, "service methods cannot be variadic");
    }
    for param in &sig.generics.params {
        let message = match param {
            GenericParam::Lifetime(_) => {
                "service methods cannot have lifetime parameters: arguments and results cross the network as owned values"
            }
            GenericParam::Type(_) => {
                "service methods cannot have type parameters: the client and the server need one concrete signature per method"
            }
            GenericParam::Const(_) => {
                "service methods cannot have const parameters: the client and the server need one concrete signature per method"
            }
        };
        errors.error(param, message);
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.error(where_clause, "service methods cannot have a `where` clause");
    }

    let mut inputs = sig.inputs.iter();
    let receiver = match inputs.next() {
        Some(FnArg::Receiver(receiver)) => check_receiver(receiver, errors),
        Some(first @ FnArg::Typed(_)) => {
            errors.error(
                first,
                "service methods take `&self` as their first argument",
            );
            None
        }
        None => {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                "service methods take `&self`: write `(&self)`",
            ));
            None
        }
    };
    let args: Vec<_> = inputs.filter_map(|input| arg(input, errors)).collect();

    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) if is_unit(ty) => None,
        ReturnType::Type(_, ty) => {
            check_type(ty, TypePosition::Return, errors);
            Some((**ty).clone())
        }
    };
    if oneway && output.is_some() {
        errors.error(
            &sig.output,
            "`#[oneway]` methods cannot return a value: the caller does not wait for a reply",
        );
    }

    for key in &hash_key {
        if !args.iter().any(|arg| arg.ident == *key) {
            errors.error(
                key,
                format_args!(
                    "`#[hash_key]` names `{key}`, which is not an argument of `{}`",
                    sig.ident
                ),
            );
        }
    }

    Some(MethodDef {
        attrs,
        fn_token: sig.fn_token,
        ident: sig.ident.clone(),
        receiver: receiver?,
        args,
        output,
        default: item.default.clone(),
        oneway,
        idempotent,
        hash_key,
    })
}

/// The arguments `#[hash_key(a, b)]` names, whose values key the hash balancers.
fn hash_key(attrs: &[Attribute], errors: &mut Errors) -> Vec<Ident> {
    let mut keys = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("hash_key")) {
        if !keys.is_empty() {
            errors.error(attr, "`#[hash_key]` is given twice");
            continue;
        }
        match attr.parse_args_with(Punctuated::<Ident, Token![,]>::parse_terminated) {
            Ok(names) if !names.is_empty() => keys.extend(names),
            Ok(_) => errors.error(
                attr,
                "`#[hash_key]` names at least one argument: `#[hash_key(user_id)]`",
            ),
            Err(_) => errors.error(
                attr,
                "`#[hash_key]` takes argument names: `#[hash_key(user_id)]`",
            ),
        }
    }
    keys
}

/// Splits a method's attributes into those kept on the trait and the flags this macro consumes.
fn method_attrs(attrs: &[Attribute], errors: &mut Errors) -> (Vec<Attribute>, bool, bool) {
    let (mut kept, mut oneway, mut idempotent) = (Vec::new(), false, false);
    for attr in attrs {
        let (flag, name) = if attr.path().is_ident("oneway") {
            (&mut oneway, "oneway")
        } else if attr.path().is_ident("idempotent") {
            (&mut idempotent, "idempotent")
        } else if attr.path().is_ident("hash_key") {
            // Read by `hash_key`; consumed here.
            continue;
        } else {
            if attr.path().is_ident("cfg") {
                errors.error(
                    attr,
                    "`#[cfg]` is not supported on service methods: the client, the server and the method list must agree",
                );
            }
            kept.push(attr.clone());
            continue;
        };
        if attr.meta.require_path_only().is_err() {
            errors.error(attr, format_args!("`#[{name}]` takes no arguments"));
        } else if *flag {
            errors.error(attr, format_args!("`#[{name}]` is given twice"));
        }
        *flag = true;
    }
    (kept, oneway, idempotent)
}

fn check_receiver(receiver: &Receiver, errors: &mut Errors) -> Option<Receiver> {
    let message = match (
        &receiver.reference,
        &receiver.mutability,
        &receiver.colon_token,
    ) {
        (Some((_, None)), None, None) => return Some(receiver.clone()),
        (Some((_, Some(lifetime))), None, None) => {
            errors.error(
                lifetime,
                "write `&self`: service methods cannot name lifetimes",
            );
            return None;
        }
        (Some(_), Some(_), None) => {
            "service methods take `&self`, not `&mut self`: a service serves many calls at once; keep mutable state behind a lock"
        }
        (None, _, None) => {
            "service methods take `&self`, not `self`: a service serves many calls, so they share it"
        }
        (_, _, Some(_)) => "service methods take `&self`, with no explicit type",
    };
    errors.error(receiver, message);
    None
}

fn arg(input: &FnArg, errors: &mut Errors) -> Option<ArgDef> {
    let PatType { attrs, pat, ty, .. } = match input {
        FnArg::Typed(pat_type) => pat_type,
        FnArg::Receiver(receiver) => {
            errors.error(receiver, "`self` can only be the first argument");
            return None;
        }
    };
    for attr in attrs {
        errors.error(attr, "attributes on arguments are not supported");
    }
    check_type(ty, TypePosition::Argument, errors);
    match &**pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(ArgDef {
            mutability: pat.mutability,
            ident: pat.ident.clone(),
            ty: (**ty).clone(),
        }),
        other => {
            errors.error(
                other,
                "arguments must be `name: Type`: patterns are not supported",
            );
            None
        }
    }
}

#[derive(Clone, Copy)]
enum TypePosition {
    Argument,
    Return,
}

/// Reports what cannot cross the network in a method's argument or return type: a borrow,
/// `impl Trait`, or `Self` (which the generated client would read as itself).
fn check_type(ty: &Type, position: TypePosition, errors: &mut Errors) {
    match ty {
        Type::Reference(reference) => errors.error(
            reference,
            match position {
                TypePosition::Argument => {
                    "arguments must be owned types (`String`, not `&str`): the server receives them over the network"
                }
                TypePosition::Return => {
                    "return types must be owned types (`String`, not `&str`): the client receives them over the network"
                }
            },
        ),
        Type::ImplTrait(impl_trait) => errors.error(
            impl_trait,
            "`impl Trait` is not supported here: values cross the network, so they need a concrete type",
        ),
        Type::Array(array) => check_type(&array.elem, position, errors),
        Type::Slice(slice) => check_type(&slice.elem, position, errors),
        Type::Group(group) => check_type(&group.elem, position, errors),
        Type::Paren(paren) => check_type(&paren.elem, position, errors),
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                check_type(elem, position, errors);
            }
        }
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_type(&qself.ty, position, errors);
            }
            if path.qself.is_none()
                && let Some(first) = path.path.segments.first()
                && first.ident == "Self"
            {
                errors.error(
                    &first.ident,
                    "`Self` cannot appear in a service method's signature: the generated client and server are other types",
                );
            }
            for segment in &path.path.segments {
                match &segment.arguments {
                    PathArguments::None => {}
                    PathArguments::AngleBracketed(generics) => {
                        for generic in &generics.args {
                            match generic {
                                GenericArgument::Type(ty) => check_type(ty, position, errors),
                                GenericArgument::AssocType(assoc) => {
                                    check_type(&assoc.ty, position, errors);
                                }
                                _ => {}
                            }
                        }
                    }
                    PathArguments::Parenthesized(fn_args) => {
                        for input in &fn_args.inputs {
                            check_type(input, position, errors);
                        }
                        if let ReturnType::Type(_, output) = &fn_args.output {
                            check_type(output, position, errors);
                        }
                    }
                }
            }
        }
        // Anything else either serializes or fails with the compiler's own clear error.
        _ => {}
    }
}

fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(tuple) => tuple.elems.is_empty(),
        Type::Paren(paren) => is_unit(&paren.elem),
        Type::Group(group) => is_unit(&group.elem),
        _ => false,
    }
}
