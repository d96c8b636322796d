//! The API surface of generated code: per operation, the HTTP method and path, the upstream
//! operationId, the extension-trait method, its parameters and the response type. Names and
//! types only, never descriptions, so it can be snapshotted for the official spec.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quote::ToTokens;
use serde_json::Value;

use crate::normalize::{UPSTREAM_ID, operations};
use crate::{Error, Result};

/// One generated operation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    /// Tag (one per operation).
    pub tag: String,
    /// Path template.
    pub path: String,
    /// HTTP method, upper case.
    pub method: String,
    /// operationId in the upstream spec.
    pub upstream_id: String,
    /// `Client<Tag>Ext::method`.
    pub call: String,
    /// `name: Type` for each builder setter.
    pub params: Vec<String>,
    /// The success type of `send()`.
    pub response: String,
}

/// Extracts the surface from generated code and the OpenAPI document it came from.
pub fn extract(code: &str, openapi: &Value) -> Result<Vec<Operation>> {
    let file = syn::parse_file(code)
        .map_err(|e| Error::Generate(format!("generated code does not parse: {e}")))?;

    // operationId → (method, path, upstream id, tag)
    let mut by_id = BTreeMap::new();
    for (path, method, op) in operations(openapi) {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let upstream = op.get(UPSTREAM_ID).and_then(Value::as_str).unwrap_or(id);
        let tag = op
            .get("tags")
            .and_then(|t| t[0].as_str())
            .unwrap_or_default();
        by_id.insert(
            id.to_string(),
            (
                method.to_uppercase(),
                path.to_string(),
                upstream.to_string(),
                tag.to_string(),
            ),
        );
    }

    // builder struct → Trait::method
    let mut calls = BTreeMap::new();
    for item in &file.items {
        let syn::Item::Trait(t) = item else { continue };
        for trait_item in &t.items {
            let syn::TraitItem::Fn(f) = trait_item else {
                continue;
            };
            if let syn::ReturnType::Type(_, ty) = &f.sig.output
                && let Some(builder) = last_segment(ty)
            {
                calls.insert(builder, format!("{}::{}", t.ident, f.sig.ident));
            }
        }
    }

    let builder = file
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Mod(m) if m.ident == "builder" => m.content.as_ref().map(|(_, items)| items),
            _ => None,
        })
        .ok_or_else(|| Error::Generate("generated code has no `builder` module".into()))?;

    let mut fields = BTreeMap::new();
    let mut sends = BTreeMap::new();
    for item in builder {
        match item {
            syn::Item::Struct(s) => {
                let params = s
                    .fields
                    .iter()
                    .filter(|f| f.ident.as_ref().is_some_and(|i| i != "client"))
                    .map(|f| {
                        format!(
                            "{}: {}",
                            f.ident
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            pretty(&unwrap_result(&f.ty))
                        )
                    })
                    .collect::<Vec<_>>();
                fields.insert(s.ident.to_string(), params);
            }
            syn::Item::Impl(i) => {
                let Some(name) = last_segment(&i.self_ty) else {
                    continue;
                };
                for impl_item in &i.items {
                    let syn::ImplItem::Fn(f) = impl_item else {
                        continue;
                    };
                    if f.sig.ident != "send" {
                        continue;
                    }
                    let response = match &f.sig.output {
                        syn::ReturnType::Type(_, ty) => pretty(&success_type(ty)),
                        syn::ReturnType::Default => "()".into(),
                    };
                    let body = f.block.to_token_stream().to_string();
                    let id = body
                        .split("operation_id :")
                        .nth(1)
                        .and_then(|rest| rest.split('"').nth(1))
                        .ok_or_else(|| {
                            Error::Generate(format!("{name}::send has no operation_id"))
                        })?;
                    sends.insert(name.clone(), (id.to_string(), response));
                }
            }
            _ => {}
        }
    }

    let mut out = Vec::new();
    for (builder_name, (id, response)) in sends {
        let (method, path, upstream_id, tag) = by_id.get(&id).cloned().ok_or_else(|| {
            Error::Generate(format!(
                "operation `{id}` is generated but not in the document"
            ))
        })?;
        out.push(Operation {
            tag,
            path,
            method,
            upstream_id,
            call: calls
                .get(&builder_name)
                .cloned()
                .unwrap_or_else(|| format!("?::{builder_name}")),
            params: fields.remove(&builder_name).unwrap_or_default(),
            response,
        });
    }
    out.sort();
    Ok(out)
}

/// The surface as text: two lines per operation.
pub fn render(ops: &[Operation]) -> String {
    let mut out = String::new();
    for op in ops {
        let _ = writeln!(
            out,
            "{} {} {} [{}]",
            op.tag, op.method, op.path, op.upstream_id
        );
        let _ = writeln!(
            out,
            "    {}({}) -> {}",
            op.call,
            op.params.join(", "),
            op.response
        );
    }
    out
}

fn last_segment(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// `Result<T, String>` → `T` (builder fields).
fn unwrap_result(ty: &syn::Type) -> syn::Type {
    generic_arg(ty, "Result", 0).unwrap_or_else(|| ty.clone())
}

/// `Result<ResponseValue<T>, Error<E>>` → `T`.
fn success_type(ty: &syn::Type) -> syn::Type {
    generic_arg(ty, "Result", 0)
        .and_then(|rv| generic_arg(&rv, "ResponseValue", 0))
        .unwrap_or_else(|| ty.clone())
}

fn generic_arg(ty: &syn::Type, name: &str, index: usize) -> Option<syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let segment = p.path.segments.last().filter(|s| s.ident == name)?;
    let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    args.args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        })
        .nth(index)
}

fn pretty(ty: &syn::Type) -> String {
    let text: String = ty.to_token_stream().to_string();
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join("");
    for prefix in [
        "::std::option::",
        "::std::string::",
        "::std::vec::",
        "::std::collections::",
        "::serde_json::",
        "types::builder::",
        "types::",
        "super::",
    ] {
        text = text.replace(prefix, "");
    }
    text.replace(',', ", ")
}
