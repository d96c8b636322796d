//! `cargo bench -p superoffice --bench get_contact`: GET + decode of a 48-field ContactEntity
//! through the SDK (generated operation, runtime hooks: auth header, concurrency slot, retry
//! bookkeeping, error normalisation, tracing span) against raw `reqwest` on the same local
//! server, twice:
//!
//! 1. **raw typed** (the apples-to-apples line): raw `reqwest` decoding the same body into the
//!    same generated type the SDK's `contact_get` returns (`types::ContactEntityWithLinks`), so
//!    SDK ÷ raw typed is the cost of the SDK's runtime and generated request code alone.
//!    Goal ≤ 1.05, printed beside the ratio with met/missed.
//! 2. **raw Value** (context): raw `reqwest` decoding into `serde_json::Value`, what a caller
//!    without the SDK's types would write; this mixes the runtime's cost with the decoder's.
//!
//! The last line is machine-readable:
//! `RESULT get_contact sdk/raw_typed=R1 sdk/raw_value=R2 goal_typed=1.05 met|missed`.
//!
//! Method: one in-process HTTP/1.1 server on 127.0.0.1 answering a fixed body; a keep-alive
//! client per side; rounds of `BATCH` sequential requests run the three sides back to back,
//! the order rotating from round to round (so drift affects all of them); the ratios are taken
//! over the medians of the rounds, and the quartiles of the per-round ratios show the spread.
//! On a 2-core machine shared with other work the per-round spread is several per cent, so one
//! run cannot tell 1.03 from 1.07; `GET_CONTACT_ONLY=sdk|raw|raw_value` runs one side only
//! (`raw` is the typed one), for `valgrind --tool=callgrind` instruction counts that do not
//! depend on machine load.
//!
//! What is known about the gap (callgrind, `GET_CONTACT_ONLY`, 1000 requests, server included,
//! release build): the SDK side runs 242.0M instructions, raw typed 219.4M (+10 %); in the
//! client alone 166.9M against 145.1M, about 21.8k instructions more per request:
//!
//! - about 8k in the runtime's attempt loop (`sdk/src/runtime.rs`): the request clone kept for
//!   replays (1.4k), the credential header (0.9k), the default headers (0.8k), the redirect
//!   check (0.6k), the per-attempt timer, the concurrency permit and the span fields;
//! - about 2k more inside reqwest for the SDK's request (more headers, a timeout);
//! - about 11k in the generated operation and progenitor's `ResponseValue`, mostly `memcpy`
//!   made inside the operation's future: 27 calls costing 6.7k instructions per request
//!   against one call (0.7k) on the raw side, where the 7.3 KB `ContactEntityWithLinks` is
//!   returned by value through `from_response`, `send()` and `into_inner`; and the copy of the
//!   response headers `ResponseValue` keeps.
//!
//! Boxing the attempt loop's future (so the operation futures stay small) leaves the count as
//! it is (243.2M). The wall-clock ratio is larger than the instruction ratio (1.17–1.23 on a
//! busy 2-core machine): the extra work is memory traffic. With the generated code and
//! progenitor's part alone above 5 %, the 1.05 goal is out of reach from the runtime hooks.

#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use superoffice::auth::StaticAuth;
use superoffice::prelude::*;
use superoffice::types;

const BATCH: usize = 200;
const ROUNDS: usize = 41;

fn contact_body() -> String {
    serde_json::json!({
        "ContactId": 123, "Name": "Amadeus AS", "Department": "", "OrgNr": "NO 938 262 184",
        "Number1": "10023", "Number2": "", "UpdatedDate": "2024-03-05T14:22:10",
        "CreatedDate": "2019-11-02T08:01:33.547",
        "Emails": [{ "Value": "post@amadeus.example", "StrippedValue": "post@amadeus.example", "Description": "" }],
        "Interests": [], "Urls": [], "Phones": [{ "Value": "+47 22 00 00 00", "StrippedValue": "+4722000000", "Description": "Main" }],
        "Faxes": [], "Description": "A customer since 2019",
        "UpdatedBy": { "AssociateId": 5, "Name": "SAL", "FullName": "Sally Sales", "Type": "InternalAssociate", "Deleted": false },
        "CreatedBy": { "AssociateId": 5, "Name": "SAL", "FullName": "Sally Sales", "Type": "InternalAssociate", "Deleted": false },
        "Associate": { "AssociateId": 5, "Name": "SAL", "FullName": "Sally Sales", "Type": "InternalAssociate", "Deleted": false },
        "Business": { "Id": 3, "Value": "Software", "Tooltip": "" }, "Category": { "Id": 4, "Value": "Customer", "Tooltip": "" },
        "Country": { "CountryId": 578, "Name": "Norway", "CurrencyId": 1, "EnglishName": "Norway", "TwoLetterISOCountry": "NO", "ThreeLetterISOCountry": "NOR" },
        "Persons": [], "NoMailing": false, "Kananame": "", "Xstop": false, "ActiveInterests": 0, "GroupId": 2,
        "ActiveStatusMonitorId": 0, "SupportAssociate": null, "TicketPriority": null, "CustomerLanguage": null,
        "Deleted": 0, "DbiAgentId": 0, "DbiLastSyncronized": "0001-01-01T00:00:00", "DbiKey": "",
        "DbiLastModified": "0001-01-01T00:00:00", "SupportPerson": null,
        "Address": { "Wgs84Latitude": 59.91, "Wgs84Longitude": 10.75, "Formatted": "Wergelandsveien 1, 0167 Oslo" },
        "Source": 0, "ActiveErpLinks": 0, "BounceEmails": [], "Domains": ["amadeus.example"], "UtmParameters": null,
        "UserDefinedFields": { "SuperOffice:1": "[I:42]", "SuperOffice:2": "Gold" }, "ExtraFields": {}, "CustomFields": {},
        "TableRight": { "Mask": "Select, Update, Delete", "Reason": "" },
        "FieldProperties": { "Name": { "FieldRight": { "Mask": "FULL", "Reason": "" }, "FieldType": "System.String", "FieldLength": 220 } },
        "_Links": { "Self": "https://sod.superoffice.com/Cust12345/api/v1/Contact/123" }
    })
    .to_string()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Sorted per-round ratios `a[i] / b[i]` and their (lower quartile, median, upper quartile).
fn spread(a: &[Duration], b: &[Duration]) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let quartile = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    (quartile(1), quartile(2), quartile(3))
}

/// The sides, in the order `GET_CONTACT_ONLY` names them.
#[derive(Clone, Copy)]
enum Side {
    Sdk,
    RawTyped,
    RawValue,
}

/// Goal for SDK ÷ raw typed.
const GOAL: f64 = 1.05;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let body = contact_body();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap().as_object().unwrap().len(), 48);
        let app = Router::new().route(
            "/Cust1/api/v1/Contact/{id}",
            get(move || {
                let body = body.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

        let base = format!("http://{addr}/Cust1");
        let sdk = Client::builder().base_url(base.clone()).auth(StaticAuth::bearer("token")).build().expect("client");
        let raw = superoffice::http::client_builder().build().expect("reqwest");
        let url = format!("{base}/api/v1/Contact/123");

        let sdk_batch = || async {
            let started = Instant::now();
            for _ in 0..BATCH {
                let contact = sdk.contact_get().id(123).send().await.expect("sdk get").into_inner();
                assert_eq!(contact.contact_id, Some(123));
            }
            started.elapsed()
        };
        // The same request the SDK sends (bearer token, JSON accepted), decoded into the same
        // generated type its operation returns.
        let raw_get = || async {
            raw.get(&url)
                .bearer_auth("token")
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .expect("raw get")
                .bytes()
                .await
                .expect("body")
        };
        let raw_typed_batch = || async {
            let started = Instant::now();
            for _ in 0..BATCH {
                let bytes = raw_get().await;
                let contact: types::ContactEntityWithLinks = serde_json::from_slice(&bytes).expect("json");
                assert_eq!(contact.contact_id, Some(123));
            }
            started.elapsed()
        };
        let raw_value_batch = || async {
            let started = Instant::now();
            for _ in 0..BATCH {
                let bytes = raw_get().await;
                let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                assert_eq!(value["ContactId"], 123);
            }
            started.elapsed()
        };
        let batch = |side: Side| {
            let (sdk_batch, raw_typed_batch, raw_value_batch) = (&sdk_batch, &raw_typed_batch, &raw_value_batch);
            async move {
                match side {
                    Side::Sdk => sdk_batch().await,
                    Side::RawTyped => raw_typed_batch().await,
                    Side::RawValue => raw_value_batch().await,
                }
            }
        };

        // `GET_CONTACT_ONLY=sdk|raw|raw_value` runs one side only, for instruction counts that
        // do not depend on machine load: `valgrind --tool=callgrind <bench binary>` once per side.
        if let Ok(only) = std::env::var("GET_CONTACT_ONLY") {
            let side = match only.as_str() {
                "sdk" => Side::Sdk,
                "raw_value" => Side::RawValue,
                _ => Side::RawTyped,
            };
            for _ in 0..5 {
                batch(side).await;
            }
            return;
        }

        // Warm up every path (connections, allocator, caches).
        for side in [Side::Sdk, Side::RawTyped, Side::RawValue] {
            batch(side).await;
        }
        let mut times: [Vec<Duration>; 3] = Default::default();
        // Six orders of the three sides, one per round in turn: each side runs first, second and
        // third equally often.
        const ORDERS: [[Side; 3]; 6] = [
            [Side::Sdk, Side::RawTyped, Side::RawValue],
            [Side::RawTyped, Side::RawValue, Side::Sdk],
            [Side::RawValue, Side::Sdk, Side::RawTyped],
            [Side::Sdk, Side::RawValue, Side::RawTyped],
            [Side::RawTyped, Side::Sdk, Side::RawValue],
            [Side::RawValue, Side::RawTyped, Side::Sdk],
        ];
        for round in 0..ROUNDS {
            for side in ORDERS[round % ORDERS.len()] {
                times[side as usize].push(batch(side).await);
            }
        }
        let [sdk_times, typed_times, value_times] = times;
        // Each round's batches ran back to back: their ratio cancels slow drift, and the spread
        // of the per-round ratios shows how far one run can be trusted.
        let (typed_q1, typed_q2, typed_q3) = spread(&sdk_times, &typed_times);
        let (value_q1, value_q2, value_q3) = spread(&sdk_times, &value_times);
        let (sdk_median, typed_median, value_median) = (median(sdk_times), median(typed_times), median(value_times));
        let per = |d: Duration| d.as_secs_f64() * 1e6 / BATCH as f64;
        let typed_ratio = sdk_median.as_secs_f64() / typed_median.as_secs_f64();
        let value_ratio = sdk_median.as_secs_f64() / value_median.as_secs_f64();
        let met = if typed_ratio <= GOAL { "met" } else { "missed" };
        println!("GET + decode of a 48-field ContactEntity, {ROUNDS} rounds of {BATCH} requests per side, medians:");
        println!("  SDK (typed, runtime hooks):                 {:8.1} µs/request", per(sdk_median));
        println!("  raw reqwest + ContactEntityWithLinks:       {:8.1} µs/request", per(typed_median));
        println!("  raw reqwest + serde_json::Value:            {:8.1} µs/request", per(value_median));
        println!(
            "  SDK ÷ raw typed: {typed_ratio:.3} (goal ≤ {GOAL}: {met}); per-round median {typed_q2:.3}, quartiles {typed_q1:.3}–{typed_q3:.3}"
        );
        println!(
            "  SDK ÷ raw Value: {value_ratio:.3} (context: the decoders differ); per-round median {value_q2:.3}, quartiles {value_q1:.3}–{value_q3:.3}"
        );
        println!("RESULT get_contact sdk/raw_typed={typed_ratio:.3} sdk/raw_value={value_ratio:.3} goal_typed={GOAL} {met}");
    });
}
