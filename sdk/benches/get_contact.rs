//! `cargo bench -p superoffice --bench get_contact`: GET + decode of a 48-field ContactEntity
//! through the SDK (generated operation, runtime hooks: auth header, retry bookkeeping, error
//! normalisation, tracing span) against raw `reqwest` + `serde_json::Value` on the same local
//! server. Prints both rates and the ratio SDK time ÷ raw time (goal ≤ 1.1).
//!
//! Method: one in-process HTTP/1.1 server on 127.0.0.1 answering a fixed body; a keep-alive
//! client per side; rounds of `BATCH` sequential requests alternate between the two sides
//! (so drift affects both); the ratio is taken over the medians of the rounds, and the
//! quartiles of the per-round ratios show the spread (on a 2-core machine about ±0.1
//! around the median, so one run cannot tell 1.05 from 1.15). On a busy machine
//! wall-clock ratios drift; `GET_CONTACT_ONLY=sdk|raw` under `valgrind --tool=callgrind`
//! compares instruction counts instead.
//!
//! What is known about the gap (2026-11-28): callgrind counts fewer instructions for the SDK
//! side (241M vs 301M for 1000 requests, server included: typed decode beats building a
//! `Value`), yet `perf stat` shows about 10 % more user time. The per-attempt timer is not
//! it (with `attempt_timeout(None)` the ratio stays within the spread), nor is the
//! keep-unknown `flatten` (off: no better). `memmove` takes 5.7 % of the SDK side's samples
//! against 3.4 % for raw; the generated `ContactEntityWithLinks` is 7.3 KB by value and the
//! `send()` future 4.6 KB, so moves of large values are the lead, not yet confirmed.

#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use superoffice::auth::StaticAuth;
use superoffice::prelude::*;

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
        let raw_batch = || async {
            let started = Instant::now();
            for _ in 0..BATCH {
                let bytes = raw.get(&url).bearer_auth("token").send().await.expect("raw get").bytes().await.expect("body");
                let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                assert_eq!(value["ContactId"], 123);
            }
            started.elapsed()
        };

        // `GET_CONTACT_ONLY=sdk|raw` runs one side only, for instruction counts that do not
        // depend on machine load: `valgrind --tool=callgrind <bench binary>` once per side.
        if let Ok(only) = std::env::var("GET_CONTACT_ONLY") {
            for _ in 0..5 {
                match only.as_str() {
                    "sdk" => sdk_batch().await,
                    _ => raw_batch().await,
                };
            }
            return;
        }

        // Warm up both paths (connections, allocator, caches).
        sdk_batch().await;
        raw_batch().await;
        let (mut sdk_times, mut raw_times) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                sdk_times.push(sdk_batch().await);
                raw_times.push(raw_batch().await);
            } else {
                raw_times.push(raw_batch().await);
                sdk_times.push(sdk_batch().await);
            }
        }
        // Each round's two batches ran back to back: their ratio cancels slow drift, and the
        // spread of the per-round ratios shows how far one run can be trusted.
        let mut ratios: Vec<f64> = sdk_times
            .iter()
            .zip(&raw_times)
            .map(|(s, r)| s.as_secs_f64() / r.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| ratios[(ratios.len() - 1) * q / 4];
        let (sdk_median, raw_median) = (median(sdk_times), median(raw_times));
        let per = |d: Duration| d.as_secs_f64() * 1e6 / BATCH as f64;
        println!("GET + decode of a 48-field ContactEntity, {ROUNDS} rounds of {BATCH} requests, medians:");
        println!("  SDK (typed, runtime hooks):        {:8.1} µs/request", per(sdk_median));
        println!("  raw reqwest + serde_json::Value:   {:8.1} µs/request", per(raw_median));
        println!("  ratio SDK ÷ raw:                   {:8.3} (goal ≤ 1.1)", sdk_median.as_secs_f64() / raw_median.as_secs_f64());
        println!("  per-round ratios: median {:.3}, quartiles {:.3}–{:.3}", quartile(2), quartile(1), quartile(3));
    });
}
