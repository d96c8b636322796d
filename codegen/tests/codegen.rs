//! Snapshot tests of the generator: the normalised OpenAPI and the generated Rust for our own
//! fixture specs (`spec/fixtures/`), and the API surface of the full official spec.
//!
//! Update snapshots with `cargo insta review`; CI runs with `INSTA_UPDATE=no` and never
//! accepts them.

use std::collections::{BTreeMap, BTreeSet};

use quote::ToTokens;
use superoffice_codegen::{Config, Request, spec};

fn config() -> Config {
    Config::load(&spec::workspace_root()).expect("spec/superoffice.toml")
}

/// Runs the whole pipeline on a fixture (every tag selected).
fn generate_fixture(name: &str) -> (serde_json::Value, String) {
    let path = spec::workspace_root().join("spec/fixtures").join(name);
    let swagger = spec::load(&path).expect("fixture").json;
    let config = config();
    let prepared = superoffice_codegen::prepare(&swagger, &config).expect("prepare");
    let (doc, warnings) =
        superoffice_codegen::select::select(&prepared.doc, None, &prepared.excluded)
            .expect("select");
    assert!(warnings.is_empty(), "{warnings:?}");
    let code = superoffice_codegen::rust::generate(&doc, &config).expect("generate");
    (doc, code)
}

fn pretty(doc: &serde_json::Value) -> String {
    serde_json::to_string_pretty(doc).unwrap()
}

#[test]
fn entity_fixture() {
    let (doc, code) = generate_fixture("entity.json");
    insta::assert_snapshot!("entity_openapi", pretty(&doc));
    insta::assert_snapshot!("entity_rust", code);
}

#[test]
fn edge_cases_fixture() {
    let (doc, code) = generate_fixture("edge-cases.json");
    insta::assert_snapshot!("edge_cases_openapi", pretty(&doc));
    insta::assert_snapshot!("edge_cases_rust", code);
}

#[test]
fn image_download_fixture() {
    let (doc, _code) = generate_fixture("image.json");
    let accept = superoffice_codegen::rust::accept_table(&doc);
    insta::assert_snapshot!("image_openapi", pretty(&doc));
    insta::assert_snapshot!(
        "image_accept_rust",
        superoffice_codegen::rust::accept_rust(&accept)
    );
    // Every Accept is a type the operation declares in `produces`, never a JSON/XML/text one
    // (the generated code reads these bodies as bytes).
    let swagger = spec::load(&spec::workspace_root().join("spec/fixtures/image.json"))
        .unwrap()
        .json;
    assert_eq!(accept.len(), 2, "{accept:?}");
    for (id, value) in &accept {
        let produces: Vec<&str> = swagger["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .find(|op| {
                op["operationId"].as_str().is_some_and(|u| {
                    u.to_ascii_lowercase()
                        .ends_with(&id.replace("widget_", "").replace('_', ""))
                })
            })
            .map(|op| {
                op["produces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(!produces.is_empty(), "{id}");
        for media in value.split(", ") {
            assert!(
                produces.contains(&media),
                "{id}: {media} not in {produces:?}"
            );
            assert!(
                !media.contains("json") && !media.starts_with("text/"),
                "{id}: {media}"
            );
        }
    }
}

#[test]
fn entity_fixture_has_the_documented_shape() {
    let (doc, code) = generate_fixture("entity.json");
    // Links/_Links clash resolved, unknown fields kept, open enums hoisted.
    let with_links = &doc["components"]["schemas"]["WidgetEntityWithLinks"];
    assert!(with_links["properties"].get("_Links").is_none());
    assert_eq!(with_links["additionalProperties"], serde_json::json!({}));
    assert_eq!(
        with_links["properties"]["Status"]["$ref"],
        "#/components/schemas/WidgetStatus"
    );
    // Common headers gone, conditional headers declared, errors typed.
    let get = &doc["paths"]["/api/v1/Widget/{id}"]["get"];
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["id", "$select", "fk", "If-Modified-Since"]);
    assert!(get["responses"].get("4XX").is_some() && get["responses"].get("404").is_none());
    assert!(code.contains("pub enum WidgetNotifyWhen"));
    assert!(code.contains("Unrecognized(::std::string::String)"));
    assert!(code.contains("crate::SoDateTime"));
    assert!(code.contains("fn widget_get(&self)"));
}

#[test]
fn official_spec_api_surface() {
    let features = BTreeSet::from(["full".to_string()]);
    let generated = superoffice_codegen::generate(&Request {
        root: spec::workspace_root(),
        features,
        spec: None,
    })
    .expect("generate full");
    let surface = superoffice_codegen::surface::extract(&generated.code, &generated.openapi)
        .expect("surface");
    assert_eq!(surface.len(), generated.operations);
    insta::assert_snapshot!(
        "official_surface_full",
        superoffice_codegen::surface::render(&surface)
    );
}

#[test]
fn full_selection_accounts_for_every_operation() {
    let root = spec::workspace_root();
    let swagger = spec::load(&spec::locate(&root).unwrap().path).unwrap().json;
    let config = config();
    let prepared = superoffice_codegen::prepare(&swagger, &config).unwrap();
    let (doc, _) =
        superoffice_codegen::select::select(&prepared.doc, None, &prepared.excluded).unwrap();
    let coverage = superoffice_codegen::coverage::Coverage::compute(
        &prepared.upstream_ops,
        &prepared.excluded,
        &doc,
    )
    .unwrap();
    let (spec_ops, generated, excluded, not_selected) = coverage.totals();
    assert_eq!(spec_ops, prepared.upstream_ops.len());
    assert_eq!(generated + excluded, spec_ops);
    assert_eq!(not_selected, 0);
    for tag in coverage.tags.values() {
        assert!(
            tag.excluded
                .iter()
                .all(|(_, reason)| !reason.trim().is_empty())
        );
    }
}

/// Items of `mod types` (and `types::builder`) by name, as token text.
fn type_items(code: &str) -> BTreeMap<String, String> {
    let file = syn::parse_file(code).unwrap();
    let mut out = BTreeMap::new();
    fn collect(items: &[syn::Item], prefix: &str, out: &mut BTreeMap<String, String>) {
        for item in items {
            let name = match item {
                syn::Item::Struct(s) => s.ident.to_string(),
                syn::Item::Enum(e) => e.ident.to_string(),
                syn::Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        collect(inner, &format!("{prefix}{}::", m.ident), out);
                    }
                    continue;
                }
                _ => continue,
            };
            out.insert(
                format!("{prefix}{name}"),
                item.to_token_stream().to_string(),
            );
        }
    }
    for item in &file.items {
        if let syn::Item::Mod(m) = item
            && m.ident == "types"
        {
            collect(&m.content.as_ref().unwrap().1, "", &mut out);
        }
    }
    out
}

#[test]
fn a_type_keeps_its_name_and_shape_whatever_is_selected() {
    let root = spec::workspace_root();
    let generate = |features: &[&str]| {
        let features = features.iter().map(|f| f.to_string()).collect();
        superoffice_codegen::generate(&Request {
            root: root.clone(),
            features,
            spec: None,
        })
        .unwrap()
        .code
    };
    let small = type_items(&generate(&["contact"]));
    let full = type_items(&generate(&["full"]));
    assert!(
        small.len() > 50,
        "contact alone should reach many types, got {}",
        small.len()
    );
    for (name, tokens) in &small {
        match full.get(name) {
            Some(other) => assert_eq!(
                tokens, other,
                "`{name}` differs between `contact` and `full`"
            ),
            None => panic!("`{name}` exists with `contact` but not with `full`"),
        }
    }
}
