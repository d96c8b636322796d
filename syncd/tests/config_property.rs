//! Property test of the config parser: thousands of generated TOML documents (known and
//! unknown keys, values of every TOML type, out-of-range numbers and durations, broken syntax)
//! never make `Config::parse` or `Config::check` panic, and every error names the file's line.
//!
//! The documents come from a seeded generator, so a failure is reproducible: the message
//! prints the seed and the document. `CONFIG_PROPERTY_CASES` and `CONFIG_PROPERTY_SEED`
//! change how many documents are tried and where the sequence starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use syncd::Config;

const FILE: &str = "syncd.toml";

/// What a key's value usually looks like; the generator mostly stays close to it and
/// sometimes gives any other type.
#[derive(Clone, Copy)]
enum Kind {
    Duration,
    Int,
    Float,
    Bool,
    Text(&'static [&'static str]),
    Secret,
    Words,
    Table,
}

const ENTITIES: &[&str] = &[
    "contact",
    "person",
    "sale",
    "project",
    "appointment",
    "ticket",
    "widget",
    "",
];
const AUTH: &[&str] = &["oauth", "system-user", "static", "basic"];
const ENVIRONMENTS: &[&str] = &[
    "online",
    "sod",
    "qaonline",
    "http://127.0.0.1:9",
    "ftp://example",
    "",
];
const LISTEN: &[&str] = &[
    "127.0.0.1:0",
    "[::1]:9464",
    "127.0.0.1:99999",
    "localhost",
    "",
];
const SHAPES: &[&str] = &["row", "entity", "column"];
const CONFLICT: &[&str] = &["fail", "overwrite", "refetch-and-reapply", "merge"];
const TRANSFORMS: &[&str] = &[".", "{id: .contactId}", ".name |=", "def f: f; f", "null"];
const NAMES: &[&str] = &["main", "other", "contacts", "persons", "a-b", ""];

/// A section: its name (`""` for the top level), whether it is an array of tables, its keys.
type Section = (&'static str, bool, Vec<(&'static str, Kind)>);

fn sections() -> Vec<Section> {
    use Kind::*;
    vec![
        (
            "",
            false,
            vec![
                ("store", Text(&["./x.db", "/nonexistent/dir/x.db", ""])),
                ("instance", Text(&["east-1", "a.b", ""])),
            ],
        ),
        (
            "control",
            false,
            vec![
                ("listen", Text(LISTEN)),
                ("webhook_secret", Secret),
                (
                    "public_url",
                    Text(&["auto", "https://example.test/hook", ""]),
                ),
                ("token", Secret),
                ("allowed_origins", Words),
                ("metrics_auth", Bool),
                ("listen_unix", Text(&["/run/syncd/control.sock", ""])),
                ("header_read_timeout", Duration),
                ("request_timeout", Duration),
                ("max_connections", Int),
                ("publish_body_limit", Int),
                ("webhook_body_limit", Int),
            ],
        ),
        (
            "tenant",
            true,
            vec![
                ("name", Text(NAMES)),
                ("environment", Text(ENVIRONMENTS)),
                ("base_url", Text(&["http://127.0.0.1:9/x", ""])),
                ("customer_id", Text(&["Cust1", ""])),
                ("client_id", Text(&["id", ""])),
                ("client_secret", Secret),
                ("auth", Text(AUTH)),
                ("token_file", Text(&["/nonexistent/t.json", ""])),
                ("redirect_uri", Text(&["http://127.0.0.1:8765/cb", "x"])),
                ("system_token", Text(&["Sys-1", ""])),
                ("private_key", Text(&["/nonexistent/key.pem", ""])),
                ("token", Secret),
                ("max_concurrency", Int),
                ("language", Text(&["en", ""])),
            ],
        ),
        (
            "subscription",
            true,
            vec![
                ("name", Text(NAMES)),
                ("tenant", Text(NAMES)),
                ("entity", Text(ENTITIES)),
                ("shape", Text(SHAPES)),
                ("columns", Words),
                ("filter", Text(&["name eq 'x'", "((("])),
                ("path", Table),
                ("query", Table),
                ("parent", Text(NAMES)),
                ("transform", Text(TRANSFORMS)),
                ("poll_interval", Duration),
                ("poll_interval_max", Duration),
                ("webhooks", Bool),
                ("reconcile_interval", Duration),
                ("mass_delete_percent", Float),
                ("mass_delete_absolute", Int),
                ("page_size", Int),
                ("overlap_days", Int),
                ("concurrency", Int),
                ("transform_timeout", Duration),
                ("transform_max_output", Int),
            ],
        ),
        (
            "retention",
            false,
            vec![
                ("webhook_events", Duration),
                ("runs", Duration),
                ("changes", Duration),
            ],
        ),
        (
            "sink",
            true,
            vec![
                ("name", Text(NAMES)),
                ("kind", Text(&["nats", "kafka"])),
                ("url", Text(&["nats://127.0.0.1:4222", "http://x", ""])),
                ("token", Secret),
                ("user", Text(&["syncd", ""])),
                ("password", Secret),
                ("stream", Text(&["SUPEROFFICE", "bad.name", ""])),
                (
                    "subject",
                    Text(&["superoffice.{tenant}.{entity}.{op}", "{nope}", "a..b"]),
                ),
                (
                    "retention",
                    Text(&["limits", "interest", "workqueue", "forever"]),
                ),
                ("replicas", Int),
                ("max_age", Duration),
                ("duplicate_window", Duration),
                ("max_lag", Int),
                ("batch", Int),
            ],
        ),
        (
            "source",
            true,
            vec![
                ("name", Text(NAMES)),
                ("kind", Text(&["nats", "kafka"])),
                ("url", Text(&["nats://127.0.0.1:4222", ""])),
                ("token", Secret),
                ("stream", Text(&["PUBLISH", ""])),
                ("subject", Text(&["superoffice.publish.>", ""])),
                ("durable", Text(&["syncd", "a.b"])),
                ("ack_wait", Duration),
            ],
        ),
        (
            "supervisor",
            false,
            vec![
                ("restart_backoff", Duration),
                ("restart_max_backoff", Duration),
                ("healthy_after", Duration),
            ],
        ),
        (
            "outbox",
            false,
            vec![
                ("foreign_app", Text(&["syncd", ""])),
                ("device", Text(&["syncd"])),
                ("key_name", Text(&["idempotency_key"])),
                ("max_attempts", Int),
                ("concurrency", Int),
                ("backoff", Duration),
                ("max_backoff", Duration),
                ("echo_suppression", Bool),
                ("tenant", Text(NAMES)),
            ],
        ),
        (
            "route",
            true,
            vec![
                ("entity", Text(ENTITIES)),
                ("conflict", Text(CONFLICT)),
                ("lookup_filter", Text(&["email eq {email}", "{"])),
                ("use_synced_last_modified", Bool),
            ],
        ),
    ]
}

fn quoted(text: &str) -> String {
    // Only printable ASCII is generated, where Rust's escapes are TOML's.
    format!("{text:?}")
}

fn duration(rng: &mut StdRng) -> String {
    // Valid for every duration key, so that enough documents are valid.
    if rng.gen_bool(0.4) {
        return quoted("2s");
    }
    const FIXED: &[&str] = &[
        "0s",
        "0ms",
        "-1s",
        "99ms",
        "100ms",
        "30d",
        "31d",
        "400d",
        "99999999999999999999999d",
        "18446744073709551616s",
        "1e400s",
        "NaN",
        "inf",
        ".s",
        "",
        "30",
        "5 fortnights",
        "1.5h",
    ];
    if rng.gen_bool(0.5) {
        return quoted(FIXED.choose(rng).expect("not empty"));
    }
    let unit = ["ms", "s", "m", "h", "d", ""]
        .choose(rng)
        .expect("not empty");
    let number: f64 = match rng.gen_range(0..3) {
        0 => f64::from(rng.gen_range(0u32..100)),
        1 => rng.gen_range(0.0..1e6),
        _ => 10f64.powi(rng.gen_range(0..40)),
    };
    quoted(&format!("{number}{unit}"))
}

fn int(rng: &mut StdRng) -> String {
    // Valid for every integer key.
    if rng.gen_bool(0.4) {
        return "8".to_string();
    }
    const FIXED: &[i64] = &[
        0,
        -1,
        1,
        64,
        65,
        256,
        257,
        1000,
        1001,
        365,
        366,
        i64::MAX,
        i64::MIN,
    ];
    if rng.gen_bool(0.6) {
        FIXED.choose(rng).expect("not empty").to_string()
    } else {
        rng.gen_range(-10_000i64..100_000).to_string()
    }
}

fn float(rng: &mut StdRng) -> String {
    const FIXED: &[&str] = &[
        "nan", "+inf", "-inf", "-0.0", "0.0", "100.0", "100.5", "1e308", "-5.0", "10.0",
    ];
    if rng.gen_bool(0.6) {
        FIXED.choose(rng).expect("not empty").to_string()
    } else {
        format!("{:.3}", rng.gen_range(-200.0..200.0))
    }
}

fn secret(rng: &mut StdRng) -> String {
    const FIXED: &[&str] = &[
        "{ value = \"s3cret\" }",
        "{ env = \"SYNCD_PROPERTY_TEST_UNSET\" }",
        "{ env = \"PATH\" }",
        "{ file = \"/nonexistent/secret\" }",
        "{ credential = \"client_secret\" }",
        "{ env = \"A\", value = \"b\" }",
        "{}",
        "{ bogus = 1 }",
        "\"plain text\"",
    ];
    FIXED.choose(rng).expect("not empty").to_string()
}

fn any_value(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0 => duration(rng),
        1 => int(rng),
        2 => float(rng),
        3 => rng.gen_bool(0.5).to_string(),
        4 => quoted(NAMES.choose(rng).expect("not empty")),
        5 => "[1, \"two\", 3.0]".to_string(),
        6 => "{ a = 1 }".to_string(),
        _ => "1979-05-27T07:32:00Z".to_string(),
    }
}

fn value(rng: &mut StdRng, kind: Kind) -> String {
    if rng.gen_bool(0.1) {
        return any_value(rng);
    }
    match kind {
        Kind::Duration => duration(rng),
        Kind::Int => int(rng),
        Kind::Float => float(rng),
        Kind::Bool => rng.gen_bool(0.5).to_string(),
        // The first choice is a valid one; prefer it so that enough documents are valid.
        Kind::Text(choices) if rng.gen_bool(0.5) => quoted(choices[0]),
        Kind::Text(choices) => quoted(choices.choose(rng).expect("not empty")),
        Kind::Secret => secret(rng),
        Kind::Words => {
            let n = rng.gen_range(0..4);
            let words: Vec<String> = (0..n)
                .map(|_| {
                    quoted(
                        ["name", "department", "", "x y"]
                            .choose(rng)
                            .expect("not empty"),
                    )
                })
                .collect();
            format!("[{}]", words.join(", "))
        }
        Kind::Table => {
            if rng.gen_bool(0.5) {
                "{ contactId = \"{contacts.contactId}\" }".to_string()
            } else {
                "{ top = \"5\" }".to_string()
            }
        }
    }
}

/// One document: usually close to a valid config, with a few keys wrong.
fn document(rng: &mut StdRng) -> String {
    let mut text = String::new();
    for (name, repeated, keys) in sections() {
        let copies = if matches!(name, "sink" | "source") {
            // Rarer: their many keys would make almost every document invalid.
            usize::from(rng.gen_bool(0.2))
        } else if repeated {
            rng.gen_range(0..3)
        } else {
            usize::from(rng.gen_bool(0.7))
        };
        for _ in 0..copies {
            match (name, repeated) {
                ("", _) => {}
                (_, true) => writeln!(text, "\n[[{name}]]").expect("string"),
                (_, false) => writeln!(text, "\n[{name}]").expect("string"),
            }
            for (key, kind) in &keys {
                let required = matches!(
                    *key,
                    "name" | "customer_id" | "auth" | "entity" | "kind" | "url"
                );
                if rng.gen_bool(if required { 0.95 } else { 0.2 }) {
                    writeln!(text, "{key} = {}", value(rng, *kind)).expect("string");
                }
            }
            if rng.gen_bool(0.05) {
                writeln!(text, "surprise = {}", any_value(rng)).expect("string");
            }
        }
    }
    match rng.gen_range(0..40) {
        // Broken syntax: cut the document anywhere, or repeat a key.
        0 if !text.is_empty() => {
            let cut = rng.gen_range(0..text.len());
            text.truncate(cut);
        }
        1 => text.push_str("\nstore = \"a\"\nstore = \"b\"\n"),
        2 => text.push_str("\n[control\n"),
        _ => {}
    }
    text
}

/// Whether an error message names a line of the file: `syncd.toml:LINE:`.
fn names_a_line(message: &str) -> bool {
    message
        .split(&format!("{FILE}:"))
        .skip(1)
        .any(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

#[test]
fn generated_documents_never_panic_and_errors_name_a_line() {
    let cases: u64 = std::env::var("CONFIG_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let first_seed: u64 = std::env::var("CONFIG_PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let no_env = BTreeMap::new();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for seed in first_seed..first_seed + cases {
        let mut rng = StdRng::seed_from_u64(seed);
        let text = document(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Config::parse(&text, FILE, &no_env).map(|config| {
                // The offline checks must not panic either.
                let _ = config.check(false);
            })
        }));
        match outcome {
            Err(_) => panic!("seed {seed}: Config::parse panicked on:\n{text}"),
            Ok(Ok(())) => accepted += 1,
            Ok(Err(error)) => {
                let message = error.to_string();
                assert!(
                    names_a_line(&message),
                    "seed {seed}: the error does not name a line: {message}\n--- document:\n{text}"
                );
                refused += 1;
            }
        }
    }
    eprintln!("{cases} documents: {accepted} accepted, {refused} refused with a line");
    // The generator must exercise both sides, or the test proves little.
    assert!(
        accepted > cases / 100,
        "only {accepted} documents were valid"
    );
    assert!(refused > cases / 2, "only {refused} documents were invalid");
}

#[test]
fn out_of_range_values_are_refused_with_key_and_line() {
    let base = "[[tenant]]\nname = \"main\"\nenvironment = \"http://127.0.0.1:9\"\ncustomer_id = \"Cust1\"\nauth = \"static\"\ntoken = { value = \"t\" }\n\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\n";
    let cases = [
        ("poll_interval = \"0s\"", "subscription[0].poll_interval"),
        (
            "poll_interval = \"99999999999999999999999d\"",
            "subscription[0].poll_interval",
        ),
        (
            "reconcile_interval = \"0ms\"",
            "subscription[0].reconcile_interval",
        ),
        // Shorter than poll_interval (default 5m).
        (
            "poll_interval_max = \"1m\"",
            "subscription[0].poll_interval_max",
        ),
        (
            "poll_interval_max = \"0s\"",
            "subscription[0].poll_interval_max",
        ),
        (
            "mass_delete_percent = 150.0",
            "subscription[0].mass_delete_percent",
        ),
        (
            "mass_delete_percent = -1.0",
            "subscription[0].mass_delete_percent",
        ),
        (
            "mass_delete_percent = nan",
            "subscription[0].mass_delete_percent",
        ),
        ("page_size = 0", "subscription[0].page_size"),
        ("page_size = 5000", "subscription[0].page_size"),
        ("concurrency = 0", "subscription[0].concurrency"),
        ("overlap_days = 100000", "subscription[0].overlap_days"),
    ];
    for (line, key) in cases {
        let text = format!("{base}{line}\n");
        let message = Config::parse(&text, FILE, &BTreeMap::new())
            .expect_err(line)
            .to_string();
        assert!(
            message.contains("syncd.toml:11:") && message.contains(key),
            "{line}: {message}"
        );
    }
    let outbox = [
        ("[outbox]\nbackoff = \"0s\"", "outbox.backoff"),
        ("[outbox]\nconcurrency = 0", "outbox.concurrency"),
        ("[outbox]\nmax_attempts = 0", "outbox.max_attempts"),
        ("[outbox]\nbackoff = \"10m\"", "outbox.max_backoff"),
        ("[outbox]\ntenant = \"nobody\"", "outbox.tenant"),
    ];
    for (section, key) in outbox {
        let text = format!("{base}\n{section}\n");
        let message = Config::parse(&text, FILE, &BTreeMap::new())
            .expect_err(section)
            .to_string();
        assert!(
            message.contains("syncd.toml:13:") && message.contains(key),
            "{section}: {message}"
        );
    }
}
