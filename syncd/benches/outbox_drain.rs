//! Outbox drain rate against the two-call protocol an exactly-once create needs.
//!
//! `cargo bench -p syncd --bench outbox_drain [-- COUNT]` (default 10 000). The phases
//! (reference: plain POSTs; protocol: batched key lookup + POST + key POST, no ledger; outbox:
//! the daemon draining COUNT queued creates), their checks and the ratio outbox ÷ protocol
//! (goal ≥ 0.8) are [`syncd_testkit::bench::outbox`]; this binary runs them once on a server
//! that answers at once (the CPU decides) and once with `OUTBOX_BENCH_LATENCY_MS` (default 30;
//! 0 skips) of server time per data call and COUNT / 5 creates (the 8 slots decide, as against
//! a real tenant), and ends with one machine-readable line:
//! `RESULT outbox outbox/protocol=R creates_per_s=N [latency_ms=L outbox/protocol@L=R2] goal=0.8 met|missed`
//! (`met` when every run reaches the goal).
//!
//! `OUTBOX_DRAIN_ONLY=outbox` runs the outbox phase alone (for profiling).

use emulator::EntityType;
use syncd_testkit::bench::outbox::{self, CONCURRENCY, GOAL};

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var("OUTBOX_DRAIN_ONLY").as_deref() == Ok("outbox") {
        let phase = runtime.block_on(outbox::outbox(count, 0));
        println!("  {:<10} {phase}", "outbox");
        return;
    }
    runtime.block_on(async {
        let in_process = outbox::fresh_emulator(0)
            .await
            .measure_create_rate(EntityType::Contact, count as u32);
        let report = outbox::measure(count, 0).await;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        println!(
            "outbox drain: {count} creates of Contact, {CONCURRENCY} in flight, emulator and client in one process ({cpus} CPUs)"
        );
        println!(
            "  emulator in-process create rate, no HTTP (context only): {:.0} creates/s",
            in_process.per_second
        );
        println!("{report}");
        println!(
            "  reference = \"the emulator's maximum create rate\": plain POSTs over HTTP from a client on the same machine, {CONCURRENCY} in flight"
        );
        println!(
            "  protocol  = what exactly-once needs and nothing else (batched key lookup, POST, key POST), no ledger"
        );
        let mut result = format!(
            "RESULT outbox outbox/protocol={:.3} creates_per_s={:.0} protocol_per_s={:.0}",
            report.ratio(),
            report.outbox.rate,
            report.protocol.rate
        );
        let mut met = report.met();

        // The same against a server that takes time to answer: here the client's 8 slots, not
        // the CPU, decide, as against a real tenant.
        let latency: u64 = std::env::var("OUTBOX_BENCH_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        if latency > 0 {
            let slow_count = (count / 5).max(CONCURRENCY * 10);
            let slow = outbox::measure(slow_count, latency).await;
            println!("with {latency} ms per data call at the server, {slow_count} creates:");
            println!("{slow}");
            result.push_str(&format!(
                " latency_ms={latency} outbox/protocol@{latency}ms={:.3}",
                slow.ratio()
            ));
            met &= slow.met();
        }
        println!(
            "{result} goal={GOAL} {}",
            if met { "met" } else { "missed" }
        );
    });
}
