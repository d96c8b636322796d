//! The uniform entity API, OData queries and pagination against the in-process emulator.

mod support;

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use futures::TryStreamExt;
use serde_json::json;
use superoffice::Error;
use superoffice::entity::{self, Contact, EntityKind, Person, WriteRequest};
use superoffice::odata::{Query, col};
use superoffice::paginate::{self, Source, Strategy};
use superoffice::retry::RetryPolicy;
use support::{Scripted, Step, emulator_client};

async fn emulator(contacts: u32, persons: u32) -> emulator::Emulator {
    let counts = emulator::SeedCounts {
        contacts,
        persons,
        ..emulator::SeedCounts::NONE
    };
    emulator::Emulator::start(emulator::Config {
        counts,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn typed_create_from_default_get_patch_and_delete() {
    let emu = emulator(3, 0).await;
    let client = emulator_client(&emu).build().unwrap();
    let contacts = client.entity::<Contact>();

    let created = contacts
        .create_with(|c| c.name = Some("Amadeus AS".into()))
        .await
        .unwrap();
    let id = created.contact_id.expect("an id");
    assert_eq!(created.name.as_deref(), Some("Amadeus AS"));

    let fetched = contacts.get(id).await.unwrap();
    assert_eq!(fetched.name.as_deref(), Some("Amadeus AS"));

    // JSON Patch, including a failing `test` → Conflict.
    let ops: Vec<superoffice::types::JsonPatch> = serde_json::from_value(
        json!([{ "op": "replace", "path": "/Department", "value": "Sales" }]),
    )
    .unwrap();
    let patched = contacts.patch(id, &ops, None).await.unwrap();
    assert_eq!(patched.department.as_deref(), Some("Sales"));
    let failing: Vec<superoffice::types::JsonPatch> =
        serde_json::from_value(json!([{ "op": "test", "path": "/Name", "value": "Someone else" }]))
            .unwrap();
    assert!(matches!(
        contacts.patch(id, &failing, None).await,
        Err(Error::Conflict(_))
    ));

    // Merge patch and PUT of the round-tripped entity.
    let merged = contacts
        .merge_patch(id, &json!({ "Department": "Support" }), None)
        .await
        .unwrap();
    assert_eq!(merged.department.as_deref(), Some("Support"));
    let mut write = entity::to_write::<Contact>(&merged).unwrap();
    write.department = Some("Marketing".into());
    let updated = contacts.update(id, &write, None).await.unwrap();
    assert_eq!(updated.department.as_deref(), Some("Marketing"));
    assert_eq!(
        updated.name.as_deref(),
        Some("Amadeus AS"),
        "PUT of the round trip keeps the rest"
    );

    contacts.delete(id, None).await.unwrap();
    let after = contacts.get(id).await;
    assert!(
        matches!(after, Err(Error::NotFound(_))),
        "soft-deleted contacts are gone from the API: {after:?}"
    );
}

#[tokio::test]
async fn conditional_requests_give_typed_outcomes() {
    let emu = emulator(2, 0).await;
    let client = emulator_client(&emu).build().unwrap();
    let contacts = client.entity::<Contact>();
    let future = Utc::now() + ChronoDuration::days(365 * 20);
    let past = Utc::now() - ChronoDuration::days(365 * 50);

    assert!(
        contacts
            .get_if_modified_since(1, future)
            .await
            .unwrap()
            .is_none(),
        "304 → None"
    );
    assert!(
        contacts
            .get_if_modified_since(1, past)
            .await
            .unwrap()
            .is_some()
    );

    let body = entity::to_write::<Contact>(&contacts.get(1).await.unwrap()).unwrap();
    let err = contacts.update(1, &body, Some(past)).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    contacts
        .update(1, &body, Some(future))
        .await
        .expect("unchanged since → saved");
}

#[tokio::test]
async fn keyset_and_skip_paging_return_every_row_once() {
    let emu = emulator(2_345, 0).await;
    let client = emulator_client(&emu).build().unwrap();
    let query = Query::new().select(["contactId", "name", "updatedDate"]);

    let keyset: Vec<i64> = client
        .entities(EntityKind::Contact)
        .list_with(
            query.clone(),
            500,
            Strategy::Keyset {
                key: "contactId".into(),
            },
        )
        .map_ok(|row| row.int("contactId").unwrap())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keyset.len(), 2_345);
    assert!(keyset.windows(2).all(|w| w[0] < w[1]));

    let pages: Vec<paginate::Page> = paginate::pages(
        &client,
        Source::List("Contact".into()),
        query.clone().order_by("contactId"),
        1000,
        Strategy::Skip,
    )
    .try_collect()
    .await
    .unwrap();
    assert_eq!(
        pages.iter().map(|p| p.rows.len()).collect::<Vec<_>>(),
        [1000, 1000, 345]
    );
    let skipped: Vec<i64> = pages
        .iter()
        .flat_map(|p| p.rows.iter().map(|r| r.primary_key().unwrap()))
        .collect();
    assert_eq!(skipped, keyset);
}

#[tokio::test]
async fn filters_reach_the_archive_with_the_day_precision_trap() {
    let emu = emulator(50, 40).await;
    let client = emulator_client(&emu).build().unwrap();
    let contacts = client.entity::<Contact>();
    // Two edits today: both have today's updatedDate, which `after yesterday` finds.
    contacts
        .merge_patch(3, &json!({ "Name": "Edited once" }), None)
        .await
        .unwrap();
    contacts
        .merge_patch(4, &json!({ "Name": "Edited twice" }), None)
        .await
        .unwrap();
    let today = chrono::DateTime::from_timestamp(emu.now().0, 0)
        .unwrap()
        .date_naive();
    let yesterday = today.pred_opt().unwrap();
    let changed: Vec<i64> = contacts
        .list(
            Query::new()
                .select(["contactId", "updatedDate"])
                .filter(col("updatedDate").after(yesterday)),
        )
        .map_ok(|r| r.int("contactId").unwrap())
        .try_collect()
        .await
        .unwrap();
    assert!(changed.contains(&3) && changed.contains(&4), "{changed:?}");
    // `after today` compares the day only: same-day edits are not "after" it.
    let none: Vec<i64> = contacts
        .list(
            Query::new()
                .select(["contactId"])
                .filter(col("updatedDate").after(today)),
        )
        .map_ok(|r| r.int("contactId").unwrap())
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    let persons: Vec<_> = client
        .entity::<Person>()
        .list(
            Query::new()
                .select(["personId", "personUpdatedDate"])
                .filter(col("personId").one_of([1, 2, 3])),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(persons.len(), 3);
    assert!(
        persons
            .iter()
            .all(|r| r.date_time("personUpdatedDate").is_some())
    );
}

#[tokio::test]
async fn deleted_contacts_show_up_in_the_recycle_archive() {
    let emu = emulator(10, 0).await;
    let client = emulator_client(&emu).build().unwrap();
    client
        .entities(EntityKind::Contact)
        .delete(7, None)
        .await
        .unwrap();
    let (archive, column) = EntityKind::Contact.recycle_archive().unwrap();
    let rows: Vec<_> = paginate::rows(
        &client,
        Source::Archive(archive.into()),
        Query::new().select(["contactId", column]),
        100,
        Strategy::Keyset {
            key: "contactId".into(),
        },
    )
    .try_collect()
    .await
    .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.int("contactId").unwrap())
            .collect::<Vec<_>>(),
        [7]
    );
    assert!(rows[0].date_time(column).is_some());
    assert!(matches!(
        client.entities(EntityKind::Selection).delete(1, None).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn writes_carry_query_parameters_and_the_precondition() {
    let server = Scripted::start(vec![
        Step::json(200, json!({ "ContactId": 5, "Name": "B" })),
        Step::json(200, json!({})),
        Step::json(200, json!({ "ContactId": 9 })),
    ])
    .await;
    let client = server.client().build().unwrap();
    let contacts = client.entities(EntityKind::Contact);
    let at = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00.750Z")
        .unwrap()
        .with_timezone(&Utc);

    let saved = contacts
        .write(
            &WriteRequest::merge_patch(5, json!({ "Name": "B" }))
                .query("$select", "Name,Department")
                .if_unmodified_since(Some(at)),
        )
        .await
        .unwrap();
    assert_eq!(saved, Some(json!({ "ContactId": 5, "Name": "B" })));
    let deleted = contacts
        .write(&WriteRequest::delete(5).queries([("a", "1 2"), ("b", "&")]))
        .await
        .unwrap();
    assert_eq!(deleted, None, "a delete answers no entity");
    let created = contacts
        .write(&WriteRequest::post(json!({ "Name": "C" })))
        .await
        .unwrap();
    assert_eq!(created, Some(json!({ "ContactId": 9 })));

    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(
        seen[0].target,
        "/Cust1/api/v1/Contact/5?%24select=Name%2CDepartment"
    );
    assert_eq!(
        seen[0].header("if-unmodified-since"),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/merge-patch+json")
    );
    assert_eq!(seen[1].method, "DELETE");
    assert_eq!(seen[1].target, "/Cust1/api/v1/Contact/5?a=1+2&b=%26");
    assert_eq!(seen[1].header("if-unmodified-since"), None);
    assert_eq!(seen[1].header("content-type"), None);
    assert_eq!(seen[2].method, "POST");
    assert_eq!(seen[2].target, "/Cust1/api/v1/Contact");
    assert_eq!(seen[2].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn writes_fail_with_typed_errors_and_an_unexpected_answer_is_an_error() {
    let server = Scripted::start(vec![
        Step::json(412, json!({ "Error": "changed" })),
        Step::json(409, json!({ "Error": "test failed" })),
        Step::text(200, "application/json", "not json"),
    ])
    .await;
    let client = server.client().build().unwrap();
    let contacts = client.entities(EntityKind::Contact);
    let err = contacts
        .write(&WriteRequest::put(5, json!({})).if_unmodified_since(Some(Utc::now())))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    let err = contacts
        .write(&WriteRequest::json_patch(5, json!([])).query("x", "y"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let err = contacts
        .write(&WriteRequest::post(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    let err = client
        .entities(EntityKind::Selection)
        .write(&WriteRequest::delete(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    assert_eq!(
        server.requests().len(),
        3,
        "the refused delete was not sent"
    );
}

#[tokio::test]
async fn entity_writes_retry_only_what_is_idempotent() {
    let retries = RetryPolicy::default()
        .with_max_attempts(4)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5));
    let unavailable_then_ok = || {
        vec![
            Step::json(503, json!({})),
            Step::json(200, json!({ "ContactId": 5 })),
        ]
    };

    // PUT and DELETE are idempotent: retried.
    for request in [
        WriteRequest::put(5, json!({})).query("q", "1"),
        WriteRequest::delete(5),
    ] {
        let server = Scripted::start(unavailable_then_ok()).await;
        let client = server.client().retry(retries.clone()).build().unwrap();
        client
            .entities(EntityKind::Contact)
            .write(&request)
            .await
            .unwrap();
        assert_eq!(server.requests().len(), 2, "{request:?}");
    }

    // POST and PATCH may have reached the server: never retried.
    for request in [
        WriteRequest::post(json!({})).query("q", "1"),
        WriteRequest::json_patch(5, json!([])),
        WriteRequest::merge_patch(5, json!({})),
    ] {
        let server = Scripted::start(unavailable_then_ok()).await;
        let client = server.client().retry(retries.clone()).build().unwrap();
        let err = client
            .entities(EntityKind::Contact)
            .write(&request)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(server.requests().len(), 1, "{request:?}");
    }

    // The operation ids are the generated ones', so opt-ins name them the same way.
    let mut opted = retries.clone();
    opted
        .non_idempotent_operations
        .insert("contact_merge_patch".into());
    let server = Scripted::start(unavailable_then_ok()).await;
    let client = server.client().retry(opted).build().unwrap();
    client
        .entities(EntityKind::Contact)
        .write(&WriteRequest::merge_patch(5, json!({})))
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn conditional_writes_against_the_emulator() {
    let emu = emulator(2, 0).await;
    let client = emulator_client(&emu).build().unwrap();
    let contacts = client.entities(EntityKind::Contact);
    let past = Utc::now() - ChronoDuration::days(365 * 50);
    let future = Utc::now() + ChronoDuration::days(365 * 20);
    let patch = || WriteRequest::merge_patch(1, json!({ "Department": "Sales" }));

    let err = contacts
        .write(&patch().if_unmodified_since(Some(past)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    let saved = contacts
        .write(&patch().if_unmodified_since(Some(future)))
        .await
        .unwrap()
        .expect("the saved entity");
    assert_eq!(saved["Department"], "Sales");
    assert_eq!(contacts.get(1).await.unwrap()["Department"], "Sales");
}
