//! The attribute's arguments: `name`, `version` and `group`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::LitStr;
use syn::parse::Parser;

/// The attribute's arguments, as written.
#[derive(Default)]
pub(super) struct ServiceArgs {
    pub(super) name: Option<LitStr>,
    pub(super) version: Option<LitStr>,
    pub(super) group: Option<LitStr>,
}

pub(super) fn service_args(tokens: TokenStream) -> syn::Result<ServiceArgs> {
    let mut args = ServiceArgs::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| meta.path.to_token_stream().to_string().replace(' ', ""));
        let slot = match key.as_str() {
            "name" => &mut args.name,
            "version" => &mut args.version,
            "group" => &mut args.group,
            _ => {
                return Err(meta.error(format_args!(
                    "unknown argument `{key}`; expected `name`, `version` or `group`"
                )));
            }
        };
        if slot.is_some() {
            return Err(meta.error(format_args!("`{key}` is given twice")));
        }
        let value: LitStr = meta.value()?.parse()?;
        if key == "name" && value.value().is_empty() {
            return Err(syn::Error::new(
                value.span(),
                "the service name cannot be empty",
            ));
        }
        // Each travels in a metadata entry of every request, whose length is a `u16`.
        if value.value().len() > usize::from(u16::MAX) {
            return Err(syn::Error::new(
                value.span(),
                format_args!("the service {key} is too long: at most {} bytes", u16::MAX),
            ));
        }
        *slot = Some(value);
        Ok(())
    });
    parser.parse2(tokens)?;
    Ok(args)
}
