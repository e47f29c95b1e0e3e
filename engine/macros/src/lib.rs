//! `#[stent::durable]`: turns an `async fn` into a durable function.
//!
//! The attribute keeps the function's name and visibility. Calling it no
//! longer runs the body: it returns a `stent::Call` that, when awaited inside
//! a durable execution, is journaled (and answered from the journal on
//! replay); awaited anywhere else, simply runs the body. The function is
//! registered in stent's global registry under `module::path::name`.
//!
//! Options (all from the seed API): `cached`, `retry_policy = EXPR`,
//! `tags = ["a", "b"]`, `priority = N`, `queue = "q"`, `idempotent`,
//! `idempotency_key_func = PATH`, `version = "v1"`, `max_concurrent = N`;
//! and `name = "shop.checkout"`, which registers the function under that
//! name instead of its module path, so moving or renaming the Rust function
//! does not orphan the executions recorded under the old name.
//! An unknown option is a compile error that lists the known ones.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Expr, FnArg, GenericArgument, ItemFn, LitBool, LitStr, Pat, PathArguments, ReturnType, Token,
    Type,
};

const KNOWN: &str = "cached, retry_policy, tags, priority, queue, idempotent, idempotency_key_func, version, max_concurrent, name";

#[derive(Default)]
struct Options {
    cached: bool,
    retry_policy: Option<Expr>,
    tags: Vec<LitStr>,
    priority: Option<Expr>,
    queue: Option<LitStr>,
    idempotent: bool,
    idempotency_key_func: Option<Expr>,
    version: Option<LitStr>,
    max_concurrent: Option<Expr>,
    name: Option<LitStr>,
}

fn flag(input: ParseStream) -> syn::Result<bool> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Ok(input.parse::<LitBool>()?.value)
    } else {
        Ok(true)
    }
}

impl Parse for Options {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut o = Options::default();
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let name: syn::Ident = input.parse()?;
            let key = name.to_string();
            if seen.contains(&key) {
                return Err(syn::Error::new(
                    name.span(),
                    format!("option `{key}` is given twice"),
                ));
            }
            seen.push(key.clone());
            match key.as_str() {
                "cached" => o.cached = flag(input)?,
                "idempotent" => o.idempotent = flag(input)?,
                "retry_policy" => {
                    input.parse::<Token![=]>()?;
                    o.retry_policy = Some(input.parse()?);
                }
                "tags" => {
                    input.parse::<Token![=]>()?;
                    let content;
                    syn::bracketed!(content in input);
                    let list = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                    o.tags = list.into_iter().collect();
                }
                "priority" => {
                    input.parse::<Token![=]>()?;
                    o.priority = Some(input.parse()?);
                }
                "queue" => {
                    input.parse::<Token![=]>()?;
                    o.queue = Some(input.parse()?);
                }
                "idempotency_key_func" => {
                    input.parse::<Token![=]>()?;
                    o.idempotency_key_func = Some(input.parse()?);
                }
                "version" => {
                    input.parse::<Token![=]>()?;
                    o.version = Some(input.parse()?);
                }
                "max_concurrent" => {
                    input.parse::<Token![=]>()?;
                    o.max_concurrent = Some(input.parse()?);
                }
                "name" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    if lit.value().trim().is_empty() {
                        return Err(syn::Error::new(
                            lit.span(),
                            "the registered name of a durable function cannot be empty",
                        ));
                    }
                    o.name = Some(lit);
                }
                other => {
                    return Err(syn::Error::new(
                        name.span(),
                        format!("unknown #[durable] option `{other}`; the options are: {KNOWN}"),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(o)
    }
}

/// Marks an `async fn` returning `Result<T, E>` as a durable function.
///
/// See the `stent` crate for examples.
#[proc_macro_attribute]
pub fn durable(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = syn::parse_macro_input!(attr as Options);
    let func = syn::parse_macro_input!(item as ItemFn);
    match expand(options, func) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn result_types(ret: &ReturnType) -> syn::Result<(Type, Type)> {
    let err = || {
        syn::Error::new_spanned(
            ret,
            "a durable function must return `Result<T, E>` where T and E are serde types",
        )
    };
    let ReturnType::Type(_, ty) = ret else {
        return Err(syn::Error::new(
            Span::call_site(),
            "a durable function must return `Result<T, E>` where T and E are serde types",
        ));
    };
    let Type::Path(path) = ty.as_ref() else {
        return Err(err());
    };
    let last = path.path.segments.last().ok_or_else(err)?;
    if last.ident != "Result" {
        return Err(err());
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Err(err());
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(t), Some(e), None) => Ok((t, e)),
        _ => Err(syn::Error::new_spanned(
            ty,
            "write the error type explicitly: `Result<T, E>` (a type alias with one parameter cannot be seen by the macro)",
        )),
    }
}

fn expand(o: Options, func: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            "#[durable] works on `async fn` only",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a durable function cannot be generic: it is registered and called by name",
        ));
    }
    let (ok_ty, err_ty) = result_types(&sig.output)?;
    let mut arg_names = Vec::new();
    let mut arg_pats = Vec::new();
    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "a durable function cannot take `self`",
                ));
            }
            FnArg::Typed(pt) => {
                let Pat::Ident(id) = pt.pat.as_ref() else {
                    return Err(syn::Error::new_spanned(
                        &pt.pat,
                        "use a plain name for each argument of a durable function",
                    ));
                };
                if let Type::Reference(r) = pt.ty.as_ref() {
                    return Err(syn::Error::new_spanned(
                        r,
                        "arguments of a durable function are stored: take them by value (owned serde types)",
                    ));
                }
                arg_names.push(id.ident.clone());
                arg_pats.push(pt.pat.clone());
                arg_types.push((*pt.ty).clone());
            }
        }
    }

    let vis = &func.vis;
    let name = &sig.ident;
    let attrs = &func.attrs;
    let body = &func.block;
    let def = format_ident!("__StentDurable_{}", name);
    let name_str = name.to_string();
    let registered_name = match &o.name {
        Some(n) => quote!(#n),
        None => quote!(::core::concat!(::core::module_path!(), "::", #name_str)),
    };

    let cached = o.cached;
    let idempotent = o.idempotent;
    let retry = match &o.retry_policy {
        Some(e) => quote!(::core::option::Option::Some(#e)),
        None => quote!(::core::option::Option::None),
    };
    let tags = &o.tags;
    let priority = match &o.priority {
        Some(e) => quote!(#e),
        None => quote!(0),
    };
    let queue = match &o.queue {
        Some(q) => quote!(::core::option::Option::Some(#q)),
        None => quote!(::core::option::Option::None),
    };
    let version = match &o.version {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let max_concurrent = match &o.max_concurrent {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let key_func = match &o.idempotency_key_func {
        Some(f) => quote! {
            ::core::option::Option::Some({
                fn __key((#(#arg_names,)*): &(#(#arg_types,)*)) -> ::std::string::String {
                    let f = #f;
                    ::std::string::String::from(f(#(::core::clone::Clone::clone(#arg_names)),*))
                }
                __key as fn(&(#(#arg_types,)*)) -> ::std::string::String
            })
        },
        None => quote!(::core::option::Option::None),
    };

    Ok(quote! {
        #(#attrs)*
        #vis fn #name(#(#arg_names: #arg_types),*) -> ::stent::Call<#def> {
            ::stent::Call::new((#(#arg_names,)*))
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #def;

        impl ::stent::DurableFn for #def {
            type Args = (#(#arg_types,)*);
            type Output = #ok_ty;
            type Error = #err_ty;
            const NAME: &'static str = #registered_name;

            fn options() -> ::stent::DurableOptions<Self::Args> {
                ::stent::DurableOptions {
                    cached: #cached,
                    retry_policy: #retry,
                    tags: &[#(#tags),*],
                    priority: #priority,
                    queue: #queue,
                    idempotent: #idempotent,
                    idempotency_key_func: #key_func,
                    version: #version,
                    max_concurrent: #max_concurrent,
                }
            }

            #[allow(unused_mut)]
            fn run((#(#arg_pats,)*): Self::Args) -> ::stent::BoxFuture<::core::result::Result<#ok_ty, #err_ty>> {
                ::std::boxed::Box::pin(async move #body)
            }
        }

        ::stent::__private::inventory::submit! {
            ::stent::__private::Registration::new::<#def>()
        }
    })
}
