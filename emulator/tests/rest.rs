//! REST entity API: CRUD, patching, conditional requests, errors, deletes, foreign keys and
//! tenant routing.

mod common;

use common::Env;
use emulator::{EntityType, TenantState, Ts};
use serde_json::{Value, json};

fn http_date(t: Ts) -> String {
    t.http_date()
}

#[tokio::test]
async fn create_read_update_patch_delete_a_contact() {
    let env = Env::default().await;
    let template = env.get_json("Contact/default").await;
    assert_eq!(template["ContactId"], 0);
    assert_eq!(
        template["Associate"]["AssociateId"], 1,
        "default owner is the caller"
    );

    let r = env
        .post("Contact")
        .json(&json!({"Name": "Acme AS", "Department": "Sales", "Category": {"Id": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "POST answers 200, not 201");
    let created: Value = r.json().await.unwrap();
    let id = created["ContactId"].as_i64().unwrap();
    assert!(id > 50);
    assert_eq!(created["Name"], "Acme AS");
    assert_eq!(created["Category"]["Value"], "Prospect");
    assert_eq!(created["CreatedBy"]["AssociateId"], 1);
    assert_eq!(
        created["UpdatedDate"], "0001-01-01T00:00:00",
        "never-edited rows carry the minimum date"
    );
    assert!(
        created["_Links"]["Self"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/Contact/{id}"))
    );

    // PUT replaces the entity.
    let mut doc = env.get_json(&format!("Contact/{id}")).await;
    doc["Name"] = json!("Acme Holding AS");
    let put: Value = env
        .put(&format!("Contact/{id}"))
        .json(&doc)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(put["Name"], "Acme Holding AS");
    assert_eq!(put["Department"], "Sales");
    assert_eq!(put["UpdatedBy"]["AssociateId"], 1);
    assert_ne!(put["UpdatedDate"], "0001-01-01T00:00:00");

    // JSON Patch: case-insensitive paths, optional leading slash, test op.
    let patched: Value = env
        .patch(&format!("Contact/{id}"))
        .json(&json!([
            {"op": "test", "path": "/name", "value": "Acme Holding AS"},
            {"op": "replace", "path": "department", "value": "Support"},
            {"op": "add", "path": "/Phones/-", "value": {"Value": "+47 22 33 44 55", "Description": "Main"}}
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["Department"], "Support");
    assert_eq!(patched["Phones"][0]["Value"], "+47 22 33 44 55");

    let failed = env
        .patch(&format!("Contact/{id}"))
        .json(&json!([{"op": "test", "path": "/Name", "value": "Someone else"}, {"op": "replace", "path": "/Name", "value": "X"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 409);
    let err: Value = failed.json().await.unwrap();
    assert_eq!(err["Error"], true);
    assert!(
        err["ErrorType"].is_string()
            && err["ErrorMessage"].is_string()
            && err["ErrorSource"].is_string()
    );
    assert_eq!(
        env.get_json(&format!("Contact/{id}")).await["Name"],
        "Acme Holding AS",
        "a failed test changes nothing"
    );

    // Merge patch.
    let merged: Value = env
        .patch(&format!("Contact/{id}"))
        .header("Content-Type", "application/merge-patch+json")
        .json(&json!({"OrgNr": "999888777", "Country": {"CountryId": 752}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(merged["OrgNr"], "999888777");
    assert_eq!(merged["Country"]["Name"], "Sweden");

    // $select nulls everything else.
    let sel = env
        .get_json(&format!("Contact/{id}?$select=Name,department"))
        .await;
    assert_eq!(sel["Name"], "Acme Holding AS");
    assert_eq!(sel["Department"], "Support");
    assert!(sel["OrgNr"].is_null());

    let del = env.delete(&format!("Contact/{id}")).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let gone = env.get(&format!("Contact/{id}")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let err: Value = gone.json().await.unwrap();
    assert_eq!(err["ErrorType"], "SoNotFoundException");
    assert_eq!(err["ErrorMessage"], format!("Contact id {id} not found"));
}

#[tokio::test]
async fn conditional_requests_use_http_dates() {
    let env = Env::default().await;
    let r = env
        .post("Person")
        .json(&json!({"Firstname": "Kari", "Lastname": "Nordmann", "Contact": {"ContactId": 3}}))
        .send()
        .await
        .unwrap();
    let p: Value = r.json().await.unwrap();
    let id = p["PersonId"].as_i64().unwrap();
    assert_eq!(p["Contact"]["ContactId"], 3);
    let now = env.emu.now();

    let not_modified = env
        .get(&format!("Person/{id}"))
        .header("If-Modified-Since", http_date(now.plus(5)))
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    let modified = env
        .get(&format!("Person/{id}"))
        .header("If-Modified-Since", http_date(now.plus(-3600)))
        .send()
        .await
        .unwrap();
    assert_eq!(modified.status(), 200);

    let stale = env
        .put(&format!("Person/{id}"))
        .header("If-Unmodified-Since", http_date(now.plus(-3600)))
        .json(&json!({"Firstname": "Kari", "Lastname": "Hansen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let fresh = env
        .put(&format!("Person/{id}"))
        .header("If-Unmodified-Since", http_date(now.plus(5)))
        .json(&json!({"Firstname": "Kari", "Lastname": "Hansen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    let stale_delete = env
        .delete(&format!("Person/{id}"))
        .header("If-Unmodified-Since", http_date(now.plus(-3600)))
        .send()
        .await
        .unwrap();
    assert_eq!(stale_delete.status(), 412);

    let no_body = env.put(&format!("Person/{id}")).send().await.unwrap();
    assert_eq!(no_body.status(), 400);
    let missing = env.get("Person/999999").send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn soft_deletes_recycle_restore_and_purge() {
    let mut env = Env::default().await;
    let truth_before = env.emu.truth(EntityType::Contact);
    let id = 7;
    assert_eq!(
        env.delete(&format!("Contact/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let listed = env
        .rows("Contact?$select=contactId&$filter=contactId eq 7")
        .await;
    assert!(
        listed.is_empty(),
        "soft-deleted contacts leave the normal archive"
    );
    let recycled = env
        .rows("Archive/RecycleContact?$select=contactId,name,deletedDate")
        .await;
    assert_eq!(recycled.len(), 1);
    assert_eq!(recycled[0]["PrimaryKey"], "7");
    assert!(
        recycled[0]["deletedDate"]
            .as_str()
            .unwrap()
            .starts_with(&env.emu.now().iso()[..10])
    );
    let t = env.emu.truth(EntityType::Contact);
    assert!(t.iter().find(|r| r.id == id).unwrap().deleted);
    assert_eq!(t.len(), truth_before.len());

    env.admin(
        reqwest::Method::POST,
        "restore",
        Some(json!({"entity": "contact", "id": id})),
    )
    .await;
    assert_eq!(
        env.get(&format!("Contact/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(env.rows("Archive/RecycleContact").await.is_empty());

    // Delete again and let the retention pass: the row is purged for good.
    env.delete(&format!("Contact/{id}")).send().await.unwrap();
    env.delete("Person/3").send().await.unwrap();
    assert_eq!(
        env.rows("Archive/RecyclePerson?$select=personId,personDeletedDate")
            .await
            .len(),
        1
    );
    env.emu.advance_clock(13 * 86_400);
    assert_eq!(
        env.get("Contact/1").send().await.unwrap().status(),
        401,
        "time travel expires tokens"
    );
    env.token = env.emu.issue_access_token();
    assert_eq!(
        env.rows("Archive/RecycleContact").await.len(),
        1,
        "still within 14 days"
    );
    env.admin(
        reqwest::Method::POST,
        "clock",
        Some(json!({"advance_seconds": 2 * 86_400})),
    )
    .await;
    env.token = env.emu.issue_access_token();
    assert!(env.rows("Archive/RecycleContact").await.is_empty());
    assert!(env.rows("Archive/RecyclePerson").await.is_empty());
    let t = env.emu.truth(EntityType::Contact);
    assert!(
        t.iter().find(|r| r.id == id).unwrap().deleted,
        "purged rows stay in the truth"
    );
    let restore = env
        .http
        .post(format!("{}/__admin/restore", env.emu.base_url()))
        .json(&json!({"entity": "contact", "id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(restore.status(), 404);
}

#[tokio::test]
async fn other_entities_follow_their_delete_rules() {
    let env = Env::default().await;
    // Tickets get status Deleted and stay readable.
    assert_eq!(env.delete("Ticket/2").send().await.unwrap().status(), 204);
    let t = env.get_json("Ticket/2").await;
    assert_eq!(t["BaseStatus"], "Deleted");
    let rows = env
        .rows("Ticket?$select=ticketId,status,lastChanged&$filter=ticketId eq 2")
        .await;
    assert_eq!(rows[0]["status"], "Deleted");
    // Sales, projects, appointments, documents and selections are removed.
    for e in ["Sale", "Project", "Appointment", "Document", "Selection"] {
        assert_eq!(
            env.delete(&format!("{e}/1")).send().await.unwrap().status(),
            204,
            "{e}"
        );
        assert_eq!(
            env.get(&format!("{e}/1")).send().await.unwrap().status(),
            404,
            "{e}"
        );
        let ty = EntityType::parse(e).unwrap();
        assert!(
            env.emu.truth(ty).iter().any(|r| r.id == 1 && r.deleted),
            "{e}"
        );
    }
}

#[tokio::test]
async fn every_entity_round_trips_through_the_api() {
    let env = Env::default().await;
    let bodies = [
        (
            "Sale",
            json!({"Heading": "Big deal", "Amount": 1500.5, "Status": "Open", "Contact": {"ContactId": 2}, "Currency": {"Id": 2}}),
        ),
        (
            "Project",
            json!({"Name": "Rollout", "ProjectStatus": {"Id": 2}, "EndDate": "2026-06-30T00:00:00"}),
        ),
        (
            "Appointment",
            json!({"Title": "Lunch", "StartDate": "2026-03-05T12:00:00", "EndDate": "2026-03-05T13:00:00", "Person": {"PersonId": 4}}),
        ),
        (
            "Document",
            json!({"Header": "Offer", "Name": "offer.docx", "DocumentTemplate": {"DocumentTemplateId": 2}}),
        ),
        (
            "Ticket",
            json!({"Title": "Help", "Person": {"PersonId": 5}, "Category": {"TicketCategoryId": 1}}),
        ),
        (
            "Selection",
            json!({"Name": "VIPs", "SelectionType": "Dynamic"}),
        ),
    ];
    for (entity, body) in bodies {
        let created: Value = env
            .post(entity)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pk = format!("{entity}Id");
        let id = created[&pk]
            .as_i64()
            .unwrap_or_else(|| panic!("{entity}: {created}"));
        for (k, v) in body.as_object().unwrap() {
            if v.is_object() {
                let (ik, iv) = v.as_object().unwrap().iter().next().unwrap();
                assert_eq!(&created[k][ik], iv, "{entity}.{k}");
            } else {
                assert_eq!(&created[k], v, "{entity}.{k}");
            }
        }
        let again = env.get_json(&format!("{entity}/{id}")).await;
        assert_eq!(again[&pk], id);
        let patched = env
            .patch(&format!("{entity}/{id}"))
            .json(&json!({"ExtraFields": {"x_note": "hello"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200, "{entity}");
    }
    let sale: Value = env.get_json("Sale/21").await;
    assert_eq!(sale["Contact"]["ContactId"], 2);
    assert_eq!(sale["Currency"]["Value"], "EUR");
    let ticket = env.get_json("Ticket/11").await;
    assert_eq!(ticket["Person"]["PersonId"], 5);
    assert!(
        ticket["LastChanged"].as_str().unwrap() > "2000",
        "tickets always carry LastChanged"
    );
}

#[tokio::test]
async fn foreign_keys_store_and_find_external_ids() {
    let env = Env::default().await;
    let app: Value = env
        .post("ForeignApp/acme-sync")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(app["Name"], "acme-sync");
    let again: Value = env.get_json("ForeignApp/acme-sync").await;
    assert_eq!(again["ForeignAppId"], app["ForeignAppId"]);
    let dev = env
        .post("ForeignApp/acme-sync/syncd/host-1")
        .send()
        .await
        .unwrap();
    assert_eq!(dev.status(), 200);
    let key: Value = env
        .post("ForeignApp/acme-sync/syncd/host-1/Key")
        .json(&json!({"Key": "ext_id", "Value": "EXT-42", "TableName": "contact", "RecordId": 12}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["RecordId"], 12);

    let by_value = env
        .get_json("ForeignApp/acme-sync/syncd/Key/ext_id/contact?keyValue=EXT-42")
        .await;
    assert_eq!(by_value["RecordId"], 12);
    let by_value_dev = env
        .get_json("ForeignApp/acme-sync/syncd/host-1/Key/ext_id/contact?Value=EXT-42")
        .await;
    assert_eq!(by_value_dev["RecordId"], 12);
    let by_record = env
        .get_json("ForeignApp/acme-sync/syncd/Key/ext_id/contact/12")
        .await;
    assert_eq!(by_record["Value"], "EXT-42");
    assert_eq!(
        env.get_json("ForeignApp/acme-sync/syncd/Key/ext_id/contact/12/Value")
            .await,
        "EXT-42"
    );
    let missing = env
        .get("ForeignApp/acme-sync/syncd/Key/ext_id/contact?keyValue=EXT-43")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let on_record = env.get_json("Contact/12/ForeignKey").await;
    assert_eq!(on_record["acme-sync.syncd.ext_id"], "EXT-42");
    let with_fk = env.get_json("Contact/12?fk=true").await;
    assert_eq!(with_fk["ExtraFields"]["acme-sync.syncd.ext_id"], "EXT-42");
    let archive = env.rows("ForeignApp?$select=appName,deviceName,keyName,keyValue,tableId,recordId&$filter=keyValue is 'EXT-42'").await;
    assert_eq!(archive.len(), 1);
    assert_eq!(archive[0]["tableId"], 5);

    // Saving (PUT) updates the same key; deleting removes it.
    env.put("ForeignApp/acme-sync/syncd/host-1/Key")
        .json(&json!({"Key": "ext_id", "Value": "EXT-99", "TableName": "contact", "RecordId": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        env.get_json("Contact/12/ForeignKey").await["acme-sync.syncd.ext_id"],
        "EXT-99"
    );
    let del = env
        .delete("ForeignApp/acme-sync/syncd/host-1/Key/ext_id/contact/12")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(env.get_json("Contact/12/ForeignKey").await, json!({}));
    let bad = env
        .post("ForeignApp/nosuch/dev/x/Key")
        .json(&json!({"Key": "k", "Value": "v", "TableName": "contact", "RecordId": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
}

#[tokio::test]
async fn moved_tenants_answer_421_and_stopped_ones_503() {
    let env = Env::default().await;
    let old = env.emu.tenant_url();
    assert!(old.ends_with("/app1/Cust12345"));
    let no_label = format!("{}/Cust12345/api/v1/Contact/1", env.emu.base_url());
    let r = env
        .http
        .get(no_label)
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);

    let info = env
        .admin(
            reqwest::Method::POST,
            "tenant",
            Some(json!({"moved": true})),
        )
        .await;
    assert_eq!(info["host_label"], "app2");
    let stale = env
        .http
        .get(format!("{old}/api/v1/Contact/1"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 421);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["Error"], true);
    let state: Value = env
        .http
        .get(format!("{}/api/state/Cust12345", env.emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["Endpoint"], env.emu.tenant_url());
    assert_eq!(state["Api"], format!("{}/api", env.emu.tenant_url()));
    assert_eq!(env.get("Contact/1").send().await.unwrap().status(), 200);

    env.emu.set_tenant_state(TenantState::OfflineMaintenance);
    let down = env.get("Contact/1").send().await.unwrap();
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["retry-after"], "60");
    let state: Value = env
        .http
        .get(format!("{}/api/state/Cust12345", env.emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["State"], "OfflineMaintenance");
    assert_eq!(state["IsRunning"], false);
    env.emu.set_tenant_state(TenantState::OnlineMaintenance);
    assert_eq!(env.get("Contact/1").send().await.unwrap().status(), 200);
    let unknown = env
        .http
        .get(format!("{}/api/state/Cust999", env.emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn current_principal_and_case_insensitive_routes() {
    let env = Env::default().await;
    let me = env.get_json("User/currentPrincipal").await;
    assert_eq!(me["AssociateId"], 1);
    assert_eq!(me["DatabaseContextIdentifier"], "Cust12345");
    let lower = env.get_json("contact/3").await;
    assert_eq!(lower["ContactId"], 3);
    let archive = env
        .rows("archive/simplecontact?$select=contactId&$top=2")
        .await;
    assert_eq!(archive.len(), 2);
    assert_eq!(
        env.get("NoSuchEntity/1").send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn created_rows_can_carry_an_updated_date() {
    let mut config = common::config();
    config.created_rows_have_updated = true;
    let env = Env::start(config).await;
    let c: Value = env
        .post("Contact")
        .json(&json!({"Name": "Fresh AS"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["UpdatedDate"], c["CreatedDate"]);
    assert_eq!(c["UpdatedBy"]["AssociateId"], 1);
}
