//! OpenAPI → Rust: progenitor (Builder interface, separate tags), a small post-pass, then
//! `prettyplease`.
//!
//! The post-pass adds what progenitor/typify cannot express: the open enums that replace
//! hoisted property enums (`x-open-enum`), lenient deserializers on integer fields, and an
//! empty default for the builders' `extra` (the unknown fields every object keeps), which typify
//! leaves unset so that `build()` would fail unless a caller supplied a map of unknown fields.

use proc_macro2::{Ident, Span, TokenStream};
use progenitor::{GenerationSettings, Generator, HooksMode, InterfaceStyle, TagStyle, TypeImpl};
use quote::quote;
use serde_json::Value;

use crate::config::Config;
use crate::normalize::OPEN_ENUM;
use crate::{Error, Result};

/// Name of the catch-all variant of every open enum.
pub const UNRECOGNIZED: &str = "Unrecognized";

/// Generates the formatted Rust source for a (normalised, selected) OpenAPI document.
pub fn generate(doc: &Value, config: &Config) -> Result<String> {
    let spec: openapiv3::OpenAPI = serde_json::from_value(doc.clone())
        .map_err(|e| Error::Generate(format!("not valid OpenAPI 3.0: {e}")))?;
    let open_enums = open_enums(doc)?;
    let gen_cfg = &config.generate;

    let mut settings = GenerationSettings::default();
    settings
        .with_interface(InterfaceStyle::Builder)
        .with_tag(TagStyle::Separate)
        .with_hooks(HooksMode::Expected)
        .with_inner_type(parse_tokens(&gen_cfg.inner_type)?)
        .with_derive("PartialEq");
    if config.normalize.lenient_datetime {
        let schema = schemars::schema::SchemaObject {
            instance_type: Some(schemars::schema::InstanceType::String.into()),
            format: Some("date-time".into()),
            ..Default::default()
        };
        settings.with_conversion(
            schema,
            &gen_cfg.date_time_type,
            [TypeImpl::Display, TypeImpl::FromStr].into_iter(),
        );
    }
    for (name, _) in &open_enums {
        settings.with_replacement(
            name,
            format!("{}::{name}", gen_cfg.types_path),
            [TypeImpl::Display, TypeImpl::FromStr].into_iter(),
        );
    }

    let mut generator = Generator::new(&settings);
    let tokens = generator
        .generate_tokens(&spec)
        .map_err(|e| Error::Generate(format!("progenitor: {e}")))?;
    let mut file: syn::File = syn::parse2(tokens)
        .map_err(|e| Error::Generate(format!("progenitor output does not parse: {e}")))?;

    let types = types_module(&mut file)?;
    for (name, values) in &open_enums {
        let item: syn::File = syn::parse2(open_enum(name, values)?)
            .map_err(|e| Error::Generate(format!("open enum {name}: {e}")))?;
        types.extend(item.items);
    }
    if config.normalize.lenient_integers {
        lenient_integers(types, &gen_cfg.lenient_int_module)?;
    }
    default_extra(types);
    Ok(prettyplease::unparse(&file))
}

/// `(operation id, Accept value)` of every operation whose success response is binary, from
/// the `x-superoffice-accept` extension the `json-only` normalisation records (sorted by id).
/// progenitor sets `Accept: application/json` only for JSON responses; the SDK's runtime sets
/// these values for the others (see [`accept_rust`]).
pub fn accept_table(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for item in paths.values() {
            let Some(item) = item.as_object() else {
                continue;
            };
            for op in item.values() {
                let (Some(id), Some(accept)) = (
                    op.get("operationId").and_then(Value::as_str),
                    op.get(crate::normalize::media::ACCEPT_EXTENSION)
                        .and_then(Value::as_str),
                ) else {
                    continue;
                };
                out.push((id.to_string(), accept.to_string()));
            }
        }
    }
    out.sort();
    out
}

/// Rust source of `fn accept_for(operation_id) -> Option<&'static str>` over [`accept_table`]
/// (written by `sdk/build.rs` to `OUT_DIR/accept.rs`).
pub fn accept_rust(table: &[(String, String)]) -> String {
    let mut out = String::from(
        "/// The `Accept` value of operations whose success response is binary (generated from\n\
         /// the spec's `produces`); `None`: the operation answers JSON.\n\
         pub(crate) fn accept_for(operation_id: &str) -> Option<&'static str> {\n    match operation_id {\n",
    );
    for (id, accept) in table {
        out.push_str(&format!("        {id:?} => Some({accept:?}),\n"));
    }
    out.push_str("        _ => None,\n    }\n}\n");
    out
}

fn parse_tokens(text: &str) -> Result<TokenStream> {
    text.parse()
        .map_err(|e| Error::Config(format!("`{text}` is not a Rust path: {e}")))
}

/// `(name, values)` of every component marked as an open enum, sorted by name.
fn open_enums(doc: &Value) -> Result<Vec<(String, Vec<String>)>> {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, schema) in schemas {
        if schema.get(OPEN_ENUM).and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let values = schema["enum"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::Generate(format!("open enum `{name}` has no string values")))?;
        out.push((name.clone(), values));
    }
    out.sort();
    Ok(out)
}

fn types_module(file: &mut syn::File) -> Result<&mut Vec<syn::Item>> {
    file.items
        .iter_mut()
        .find_map(|item| match item {
            syn::Item::Mod(m) if m.ident == "types" => m.content.as_mut().map(|(_, items)| items),
            _ => None,
        })
        .ok_or_else(|| Error::Generate("progenitor output has no `types` module".into()))
}

/// A Rust variant name for an enum value (`inDiary` → `InDiary`).
pub fn variant_name(value: &str) -> String {
    let pascal = crate::normalize::pascal(value);
    if pascal.is_empty() || pascal.starts_with(|c: char| c.is_ascii_digit()) || pascal == "Self" {
        format!("V{pascal}")
    } else {
        pascal
    }
}

/// The code of one open enum: known variants plus `Unrecognized(String)`.
fn open_enum(name: &str, values: &[String]) -> Result<TokenStream> {
    let ident = Ident::new(name, Span::call_site());
    let mut seen = std::collections::BTreeSet::new();
    let mut variants = Vec::new();
    for value in values {
        let variant = variant_name(value);
        if variant == UNRECOGNIZED || !seen.insert(variant.clone()) {
            return Err(Error::Generate(format!(
                "open enum `{name}`: value {value:?} gives a duplicate variant"
            )));
        }
        variants.push((Ident::new(&variant, Span::call_site()), value.as_str()));
    }
    let unrecognized = Ident::new(UNRECOGNIZED, Span::call_site());
    let decls = variants.iter().map(|(v, value)| {
        let doc = format!("`{value}`");
        quote! { #[doc = #doc] #v, }
    });
    let to_str = variants
        .iter()
        .map(|(v, value)| quote! { Self::#v => #value, });
    let from_str = variants
        .iter()
        .map(|(v, value)| quote! { #value => Self::#v, });
    let known = variants.iter().map(|(_, value)| quote! { #value, });
    let doc = format!(
        "An open enum: the values the spec lists, plus [`{name}::{UNRECOGNIZED}`] for anything else \
         (a newer server value, or a `[Flags]` combination such as `\"A, B\"`; see [`{name}::flags`])."
    );
    Ok(quote! {
        #[doc = #doc]
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum #ident {
            #(#decls)*
            /// A value this version of the spec does not list, kept verbatim.
            #unrecognized(::std::string::String),
        }

        impl #ident {
            /// Every value the spec lists, in order.
            pub const KNOWN: &'static [&'static str] = &[#(#known)*];

            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    #(#to_str)*
                    Self::#unrecognized(value) => value.as_str(),
                }
            }

            /// Whether the value is one the spec lists.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::#unrecognized(_))
            }

            /// The members of a `[Flags]` combination (`"A, B"` → `[A, B]`); a single value
            /// yields itself.
            pub fn flags(&self) -> ::std::vec::Vec<Self> {
                self.as_str()
                    .split(',')
                    .map(str::trim)
                    .filter(|part| !part.is_empty())
                    .map(Self::from)
                    .collect()
            }
        }

        impl ::std::convert::From<&str> for #ident {
            fn from(value: &str) -> Self {
                match value {
                    #(#from_str)*
                    other => Self::#unrecognized(other.to_string()),
                }
            }
        }

        impl ::std::convert::From<::std::string::String> for #ident {
            fn from(value: ::std::string::String) -> Self {
                Self::from(value.as_str())
            }
        }

        impl ::std::str::FromStr for #ident {
            type Err = ::std::convert::Infallible;
            fn from_str(value: &str) -> ::std::result::Result<Self, Self::Err> {
                Ok(Self::from(value))
            }
        }

        impl ::std::fmt::Display for #ident {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for #ident {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #ident {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                struct Visitor;
                impl ::serde::de::Visitor<'_> for Visitor {
                    type Value = #ident;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str("a string (or a number) naming an enum value")
                    }
                    fn visit_str<E: ::serde::de::Error>(self, value: &str) -> ::std::result::Result<Self::Value, E> {
                        Ok(#ident::from(value))
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, value: i64) -> ::std::result::Result<Self::Value, E> {
                        Ok(#ident::from(value.to_string()))
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, value: u64) -> ::std::result::Result<Self::Value, E> {
                        Ok(#ident::from(value.to_string()))
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
    })
}

/// Adds `#[serde(deserialize_with = "…")]` to integer fields of the generated structs, so a
/// JSON number with a fraction (`99.99`) decodes (truncated) instead of failing the response.
fn lenient_integers(types: &mut [syn::Item], module: &str) -> Result<()> {
    for item in types {
        let syn::Item::Struct(s) = item else { continue };
        let syn::Fields::Named(fields) = &mut s.fields else {
            continue;
        };
        for field in &mut fields.named {
            let ty = normalized_type(&field.ty);
            let function = match ty.as_str() {
                "::std::option::Option<i32>" => "option_i32",
                "::std::option::Option<i64>" => "option_i64",
                "i32" => "i32",
                "i64" => "i64",
                "::std::option::Option<::std::vec::Vec<i32>>" => "option_vec_i32",
                "::std::vec::Vec<i32>" => "vec_i32",
                _ => continue,
            };
            let path = format!("{module}::{function}");
            // `deserialize_with` turns off serde's implicit "missing Option = None".
            let has_default = field.attrs.iter().any(|a| {
                a.path().is_ident("serde")
                    && quote!(#a)
                        .to_string()
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|w| w == "default")
            });
            if function.starts_with("option") && !has_default {
                field
                    .attrs
                    .push(syn::parse_quote!(#[serde(default, deserialize_with = #path)]));
            } else {
                field
                    .attrs
                    .push(syn::parse_quote!(#[serde(deserialize_with = #path)]));
            }
        }
    }
    Ok(())
}

/// In `types::builder`, every `impl Default` whose struct literal sets `extra` to typify's
/// "no value supplied" error sets it to an empty map instead: unknown fields are optional, so a
/// builder that names only known fields builds. Returns how many builders changed.
fn default_extra(types: &mut [syn::Item]) -> usize {
    let mut changed = 0;
    for item in types {
        let syn::Item::Mod(module) = item else {
            continue;
        };
        if module.ident != "builder" {
            continue;
        }
        let Some((_, items)) = module.content.as_mut() else {
            continue;
        };
        for item in items {
            let syn::Item::Impl(imp) = item else { continue };
            let is_default = imp
                .trait_
                .as_ref()
                .and_then(|(path, _)| path.segments.last())
                .is_some_and(|segment| segment.ident == "Default");
            if !is_default {
                continue;
            }
            for item in &mut imp.items {
                let syn::ImplItem::Fn(function) = item else {
                    continue;
                };
                for stmt in &mut function.block.stmts {
                    let syn::Stmt::Expr(syn::Expr::Struct(literal), _) = stmt else {
                        continue;
                    };
                    for field in &mut literal.fields {
                        let syn::Member::Named(name) = &field.member else {
                            continue;
                        };
                        let unset = matches!(&field.expr, syn::Expr::Call(call)
                            if matches!(&*call.func, syn::Expr::Path(p) if p.path.is_ident("Err")));
                        if name == "extra" && unset {
                            field.expr = syn::parse_quote!(Ok(Default::default()));
                            changed += 1;
                        }
                    }
                }
            }
        }
    }
    changed
}

fn normalized_type(ty: &syn::Type) -> String {
    quote!(#ty)
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_identifiers() {
        assert_eq!(variant_name("inDiary"), "InDiary");
        assert_eq!(variant_name("2FA"), "V2FA");
        assert_eq!(variant_name("Self"), "VSelf");
        assert_eq!(variant_name("add"), "Add");
    }

    #[test]
    fn duplicate_variants_are_rejected() {
        assert!(open_enum("X", &["Unknown".into(), "unknown".into()]).is_err());
        assert!(open_enum("X", &["Unrecognized".into()]).is_err());
        assert!(open_enum("X", &["A".into(), "B".into()]).is_ok());
    }

    #[test]
    fn builders_default_extra_to_an_empty_map() {
        let mut file: syn::File = syn::parse_quote! {
            pub mod builder {
                impl ::std::default::Default for Webhook {
                    fn default() -> Self {
                        Self {
                            name: Ok(Default::default()),
                            extra: Err("no value supplied for extra".to_string()),
                        }
                    }
                }
                impl ::std::default::Default for Other {
                    fn default() -> Self {
                        Self { id: Err("no value supplied for id".to_string()) }
                    }
                }
            }
        };
        assert_eq!(default_extra(&mut file.items), 1);
        let text = prettyplease::unparse(&file);
        assert!(text.contains("extra: Ok(Default::default())"), "{text}");
        // A required field stays required.
        assert!(
            text.contains(r#"id: Err("no value supplied for id".to_string())"#),
            "{text}"
        );
        assert_eq!(default_extra(&mut file.items), 0);
    }
}
