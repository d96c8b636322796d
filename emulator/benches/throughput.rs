//! Emulator throughput and footprint: `cargo bench -p emulator --bench throughput`.
//!
//! Seeds `EMULATOR_BENCH_CONTACTS` contacts (default 1,000,000) and prints the resident memory
//! that took, then pages `SimpleContact` with keyset pages of 1000 rows
//! (`$select=contactId,name,updatedDate&$filter=contactId gt N&$orderBy=contactId`) over
//! loopback — one client, then two in parallel — for `EMULATOR_BENCH_ROWS` rows (default
//! 300,000) each, and an incremental-sync style query ordered by `updatedDate`. Last, the
//! emulator's own create rate. Targets: ≥ 20,000 slim rows/s, ≤ 1.5 GB for 1M contacts.

use std::time::Instant;

use emulator::{Config, EntityType, SeedCounts};

fn status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn page_through(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    start: i64,
    rows: u64,
) -> u64 {
    let mut last = start;
    let mut seen = 0u64;
    while seen < rows {
        let url = format!(
            "{base}/api/v1/Contact?$select=contactId,name,updatedDate&$filter=contactId%20gt%20{last}&$orderBy=contactId&$top=1000"
        );
        let body: serde_json::Value = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let page = body["value"].as_array().expect("value");
        if page.is_empty() {
            break;
        }
        seen += page.len() as u64;
        last = page
            .last()
            .and_then(|r| r["contactId"].as_i64())
            .expect("contactId");
    }
    seen
}

fn main() {
    let contacts = env_num("EMULATOR_BENCH_CONTACTS", 1_000_000) as u32;
    let rows = env_num("EMULATOR_BENCH_ROWS", 300_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let rss_before = status_kb("VmRSS:").unwrap_or(0);
        let t = Instant::now();
        let config = Config {
            counts: SeedCounts::contacts_only(contacts),
            ..Config::default()
        };
        let emu = emulator::Emulator::start(config).await.expect("start");
        let seed_secs = t.elapsed().as_secs_f64();
        let rss_after = status_kb("VmRSS:").unwrap_or(0);
        let hwm = status_kb("VmHWM:").unwrap_or(0);
        println!("seeded {contacts} contacts in {seed_secs:.2} s");
        println!(
            "memory: VmRSS {:.0} MB after seeding ({:.0} MB for the data), VmHWM {:.0} MB",
            rss_after as f64 / 1024.0,
            rss_after.saturating_sub(rss_before) as f64 / 1024.0,
            hwm as f64 / 1024.0
        );

        let token = emu.issue_access_token();
        let base = emu.tenant_url();
        let http = reqwest::Client::new();
        // Warm up connections and caches.
        page_through(&http, &base, &token, 0, 5_000).await;

        let t = Instant::now();
        let n = page_through(&http, &base, &token, 0, rows).await;
        let secs = t.elapsed().as_secs_f64();
        println!("odata keyset paging, 1 client: {n} rows in {secs:.2} s = {:.0} rows/s", n as f64 / secs);

        let t = Instant::now();
        let half = i64::from(contacts / 2);
        let (a, b) = tokio::join!(
            page_through(&http, &base, &token, 0, rows),
            page_through(&http, &base, &token, half, rows)
        );
        let secs = t.elapsed().as_secs_f64();
        println!("odata keyset paging, 2 clients: {} rows in {secs:.2} s = {:.0} rows/s", a + b, (a + b) as f64 / secs);

        // Incremental-sync style: a date filter ordered by updatedDate (sorted once, then paged
        // from the cache).
        let t = Instant::now();
        let mut served = 0u64;
        for page in 0..50 {
            let url = format!(
                "{base}/api/v1/Contact?$select=contactId,updatedDate&$filter=updatedDate%20after%20'2024-06-30'&$orderBy=updatedDate,contactId&$top=1000&$skip={}",
                page * 1000
            );
            let body: serde_json::Value = http.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
            served += body["value"].as_array().map(Vec::len).unwrap_or(0) as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("odata updatedDate ordering: {served} rows in {secs:.2} s = {:.0} rows/s", served as f64 / secs);

        let rate = tokio::task::spawn_blocking({
            let count = 20_000;
            let emu_rate = move |e: &emulator::Emulator| e.measure_create_rate(EntityType::Contact, count);
            let emu = emu;
            move || (emu_rate(&emu), emu)
        })
        .await
        .expect("create rate");
        println!("create rate (contacts, in-process): {:.0} creates/s", rate.0.per_second);
        let stats = rate.1.stats();
        println!("requests served: {}, archive rows served: {}", stats.requests, stats.archive_rows);
        println!("final VmHWM {:.0} MB", status_kb("VmHWM:").unwrap_or(0) as f64 / 1024.0);
    });
}
