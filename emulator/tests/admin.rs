//! The admin API and its library twins: seeding, ground truth, simulated activity, counters,
//! tokens, the clock and the create-rate probe.

mod common;

use common::Env;
use emulator::{EntityType, entity_hash};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn truth_hashes_match_what_the_api_serves() {
    let env = Env::default().await;
    let truth = env.admin(Method::GET, "truth/contact", None).await;
    let rows = truth.as_array().unwrap();
    assert_eq!(rows.len(), 50);
    for row in rows.iter().take(10) {
        let id = row["id"].as_i64().unwrap();
        let doc = env.get_json(&format!("Contact/{id}")).await;
        assert_eq!(row["hash"], entity_hash(&doc), "contact {id}");
        assert_eq!(row["deleted"], false);
        let last = if doc["UpdatedDate"] == "0001-01-01T00:00:00" {
            &doc["CreatedDate"]
        } else {
            &doc["UpdatedDate"]
        };
        assert_eq!(&row["updated"], last);
    }
    // Every entity has a truth, and a change changes the hash and `updated`.
    for e in [
        "person",
        "sale",
        "project",
        "appointment",
        "document",
        "ticket",
        "selection",
    ] {
        assert!(
            !env.admin(Method::GET, &format!("truth/{e}"), None)
                .await
                .as_array()
                .unwrap()
                .is_empty(),
            "{e}"
        );
    }
    let before = env
        .emu
        .truth(EntityType::Sale)
        .into_iter()
        .find(|r| r.id == 2)
        .unwrap();
    env.patch("Sale/2")
        .json(&json!({"Amount": 123.0}))
        .send()
        .await
        .unwrap();
    let after = env
        .emu
        .truth(EntityType::Sale)
        .into_iter()
        .find(|r| r.id == 2)
        .unwrap();
    assert_ne!(before.hash, after.hash);
    let doc = env.get_json("Sale/2").await;
    assert_eq!(after.updated, doc["UpdatedDate"].as_str().unwrap());
    assert_eq!(after.hash, entity_hash(&doc));
    let bad = env
        .http
        .get(format!("{}/__admin/truth/nosuch", env.emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn seed_and_activity_over_http() {
    let env = Env::default().await;
    let seeded = env
        .admin(
            Method::POST,
            "seed",
            Some(json!({"entity": "contact", "count": 25})),
        )
        .await;
    assert_eq!(seeded["total"], 75);
    assert_eq!(env.emu.truth(EntityType::Contact).len(), 75);
    let report = env
        .admin(
            Method::POST,
            "activity",
            Some(json!({"creates": 2, "updates": 10, "deletes": 2, "entity": "contact"})),
        )
        .await;
    assert_eq!(report["created"].as_array().unwrap().len(), 2);
    assert_eq!(report["deleted"].as_array().unwrap().len(), 2);
    let updated = report["updated"].as_array().unwrap();
    assert!(!updated.is_empty());
    let truth = env.emu.truth(EntityType::Contact);
    assert_eq!(truth.len(), 77);
    assert_eq!(truth.iter().filter(|r| r.deleted).count(), 2);
    // Updates carry another user's associate id.
    let id = updated[0]["id"].as_i64().unwrap();
    if env
        .get(&format!("Contact/{id}"))
        .send()
        .await
        .unwrap()
        .status()
        == 200
    {
        let doc = env.get_json(&format!("Contact/{id}")).await;
        let by = doc["UpdatedBy"]["AssociateId"].as_i64().unwrap();
        assert!((3..=10).contains(&by));
    }
    // A mixed activity touches several entities.
    let mixed = env
        .admin(Method::POST, "activity", Some(json!({"creates": 20})))
        .await;
    let kinds: std::collections::BTreeSet<&str> = mixed["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["entity"].as_str().unwrap())
        .collect();
    assert!(kinds.len() > 2, "{kinds:?}");
}

#[tokio::test]
async fn tokens_tenant_clock_stats_and_create_rate() {
    let env = Env::default().await;
    let t = env.admin(Method::POST, "tokens/access", None).await;
    let token = t["access_token"].as_str().unwrap();
    assert_eq!(
        env.http
            .get(env.url("Contact/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ticket = env.admin(Method::POST, "tokens/ticket", None).await;
    let r = env
        .http
        .get(env.url("Contact/1"))
        .header(
            "Authorization",
            format!("SOTicket {}", ticket["ticket"].as_str().unwrap()),
        )
        .header("SO-AppToken", ticket["app_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let tenant = env.admin(Method::GET, "tenant", None).await;
    assert_eq!(tenant["state"], "Running");
    let moved = env
        .admin(
            Method::POST,
            "tenant",
            Some(json!({"moved": true, "state": "Suspended"})),
        )
        .await;
    assert_eq!(moved["host_label"], "app2");
    assert_eq!(moved["tenant_url"], env.emu.tenant_url());
    assert_eq!(moved["state"], "Suspended");

    let clock = env.admin(Method::GET, "clock", None).await;
    assert_eq!(clock["offset_seconds"], 0);
    let clock = env
        .admin(Method::POST, "clock", Some(json!({"advance_seconds": 90})))
        .await;
    assert_eq!(clock["offset_seconds"], 90);

    env.admin(Method::POST, "stats/reset", None).await;
    env.emu.set_tenant_state(emulator::TenantState::Running);
    let token = env.emu.issue_access_token();
    env.http
        .get(format!(
            "{}/api/v1/Contact?$select=contactId&$top=5",
            env.emu.tenant_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    env.http
        .get(format!("{}/api/v1/Contact/9999", env.emu.tenant_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let stats: Value = env.admin(Method::GET, "stats", None).await;
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["by_status"]["200"], 1);
    assert_eq!(stats["by_status"]["404"], 1);
    assert_eq!(stats["by_class"]["odata"], 1);
    assert_eq!(stats["by_class"]["entity"], 1);
    assert_eq!(stats["archive_rows"], 5);

    let rate = env
        .admin(
            Method::POST,
            "bench/create",
            Some(json!({"entity": "contact", "count": 200})),
        )
        .await;
    assert_eq!(rate["count"], 200);
    assert!(rate["per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(env.emu.truth(EntityType::Contact).len(), 250);
}
