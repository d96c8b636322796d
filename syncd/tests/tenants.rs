//! Tenants are isolated: a tenant whose credentials are rejected, or whose secret cannot be
//! read, is degraded (`/readyz`, `syncd_tenant_up`) while the other tenants sync; the daemon
//! refuses to start only when no tenant can work.

use std::time::Duration;

use emulator::{EntityType, FaultRule, RouteClass};
use syncd_testkit::sync::*;

const T: Duration = Duration::from_secs(30);

/// A second tenant on the same emulator, with a static token of the caller's choosing.
fn static_tenant(emu: &emulator::Emulator, name: &str, token: &str) -> String {
    format!(
        "\n[[tenant]]\nname = {name:?}\nenvironment = {env:?}\ncustomer_id = {ctx:?}\nauth = \"static\"\ntoken = {token}\n",
        env = emu.base_url(),
        ctx = emu.context_identifier(),
    )
}

fn subscription(name: &str, tenant: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\ntenant = {tenant:?}\nentity = \"contact\"\npoll_interval = \"200ms\"\nwebhooks = false\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tenant_is_degraded_while_the_good_one_syncs() {
    let emu = emulator(counts(60, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&static_tenant(
        &emu,
        "rejected",
        "{ value = \"not-a-valid-token\" }",
    ));
    text.push_str(&static_tenant(
        &emu,
        "unreadable",
        "{ env = \"SYNCD_TEST_TENANT_TOKEN_UNSET\" }",
    ));
    text.push_str(&subscription("good", "emu"));
    text.push_str(&subscription("bad", "rejected"));
    text.push_str(&subscription("lost", "unreadable"));
    let running = start(&text).await;

    let expected = truth_live(&emu, EntityType::Contact);
    running
        .when_fed(T, "the good tenant's subscription", || async {
            matches(&db, "good", &expected)
        })
        .await;

    let services = running.services();
    let problems = services.health.problems().join("\n");
    assert!(
        problems.contains("tenant rejected: degraded: credentials rejected"),
        "{problems}"
    );
    assert!(
        problems.contains("tenant unreadable: degraded")
            && problems.contains("SYNCD_TEST_TENANT_TOKEN_UNSET"),
        "{problems}"
    );
    assert!(!problems.contains("tenant emu"), "{problems}");
    let up = |tenant: &str| {
        services
            .metrics
            .get("syncd_tenant_up", &[("tenant", tenant)])
    };
    assert_eq!(up("emu"), 1.0);
    assert_eq!(up("rejected"), 0.0);
    assert_eq!(up("unreadable"), 0.0);
    // The broken tenants' subscriptions stored nothing; the good one is complete.
    assert!(records(&db, "bad").is_empty());
    assert!(records(&db, "lost").is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_only_when_no_tenant_can_work() {
    let emu = emulator(counts(5, 0, 0), |_| {}).await;
    let dir = workdir();
    let text = format!(
        "store = {:?}\n[control]\nlisten = \"127.0.0.1:0\"\n{}{}",
        db_path(dir.path()).display().to_string(),
        static_tenant(&emu, "rejected", "{ value = \"not-a-valid-token\" }"),
        subscription("bad", "rejected"),
    );
    let error = try_start(&text)
        .await
        .expect_err("no tenant can work")
        .to_string();
    assert!(
        error.contains("tenant \"rejected\"") && error.contains("credentials rejected"),
        "{error}"
    );
}

/// The `tenants` loop's first wait before it verifies a degraded tenant again (5 s, doubling).
const REVERIFY_BACKOFF: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tenant_is_verified_again_after_the_backoff_on_the_daemons_clock() {
    let emu = emulator(counts(20, 0, 0), |_| {}).await;
    // SuperOffice does not answer the verification call: at start-up and at the loop's first
    // look right after; then it does.
    emu.add_fault(FaultRule {
        matching: Some("currentPrincipal".into()),
        count: Some(2),
        ..FaultRule::status(RouteClass::Data, 404)
    })
    .unwrap();
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription("good", "emu"));
    let running = start(&text).await;
    let services = running.services();
    let up = || {
        services
            .metrics
            .get("syncd_tenant_up", &[("tenant", "emu")])
    };
    assert_eq!(up(), 0.0, "unreachable at start-up: degraded");
    eventually(T, "the loop's first look failed too", || async {
        match emu.stats().faults_injected {
            2 => Ok(()),
            n => Err(format!("{n} faults injected")),
        }
    })
    .await;
    // The loop waits out its backoff on the daemon's clock (the only wait of about 5 s):
    // skip it instead of sleeping.
    running
        .clock
        .until_waiting(
            1,
            REVERIFY_BACKOFF - Duration::from_secs(1)..REVERIFY_BACKOFF,
        )
        .await;
    let skipped = std::time::Instant::now();
    running.clock.advance(REVERIFY_BACKOFF);
    eventually(T, "verified again", || async {
        if up() == 1.0 {
            Ok(())
        } else {
            Err(services.health.problems().join("; "))
        }
    })
    .await;
    assert!(
        skipped.elapsed() < REVERIFY_BACKOFF - Duration::from_secs(1),
        "came up after {:?}: the backoff was slept, not skipped",
        skipped.elapsed()
    );
    assert!(
        !services
            .health
            .problems()
            .iter()
            .any(|p| p.contains("tenant emu")),
        "{:?}",
        services.health.problems()
    );
    // And its subscription syncs.
    let expected = truth_live(&emu, EntityType::Contact);
    running
        .when_fed(T, "the subscription", || async {
            matches(&db, "good", &expected)
        })
        .await;
    running.stop().await;
}
