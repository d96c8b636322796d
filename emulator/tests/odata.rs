//! OData archive semantics: envelope, $select/$filter/$orderBy/$top/$skip, the day-precision
//! trap of date columns, recycle archives and the paging settings.

mod common;

use common::Env;
use emulator::{Config, EntityType, Ts};
use serde_json::{Value, json};

const DAY: i64 = 86_400;

fn ts(v: &Value) -> Ts {
    Ts::parse_literal(v.as_str().unwrap()).unwrap().0
}

#[tokio::test]
async fn envelope_and_slim_rows() {
    let env = Env::default().await;
    let text = env
        .get("Contact?$select=contactId,name,updatedDate&$top=3")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("{\"odata.metadata\":\""), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["odata.nextLink"].is_null());
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let first = rows[0].as_object().unwrap();
    let keys: Vec<&String> = first.keys().collect();
    assert_eq!(
        keys,
        [
            "PrimaryKey",
            "EntityName",
            "contactId",
            "name",
            "updatedDate"
        ]
    );
    assert_eq!(
        first["PrimaryKey"], "1",
        "PrimaryKey is a string in slim mode"
    );
    assert_eq!(first["EntityName"], "contact");
    assert_eq!(first["contactId"], 1);
    assert!(first["updatedDate"].as_str().unwrap().len() == 19);

    for (path, entity, pk) in [
        (
            "Person?$select=personId,personUpdatedDate",
            "person",
            "personId",
        ),
        ("Sale?$select=saleId,updatedDate", "sale", "saleId"),
        (
            "Project?$select=projectId,updatedDate",
            "project",
            "projectId",
        ),
        (
            "Appointment?$select=appointmentId,updatedDate",
            "appointment",
            "appointmentId",
        ),
        (
            "Document?$select=documentId,updatedDate",
            "document",
            "documentId",
        ),
        ("Ticket?$select=ticketId,lastChanged", "ticket", "ticketId"),
        (
            "Selection?$select=selectionId,updatedDate",
            "selection",
            "selectionId",
        ),
        ("Archive/FindSale?$select=saleId", "sale", "saleId"),
    ] {
        let rows = env.rows(path).await;
        assert!(!rows.is_empty(), "{path}");
        assert_eq!(rows[0]["EntityName"], entity, "{path}");
        assert_eq!(rows[0]["PrimaryKey"], rows[0][pk].to_string(), "{path}");
    }
    let bad = env
        .get("Contact?$select=noSuchColumn")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = env
        .get("Contact?$filter=name frobs 'x'")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = env.get("Archive/NoSuchProvider").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn filters_match_a_client_side_model() {
    let env = Env::default().await;
    let all = env
        .rows("Contact?$select=contactId,name,department,category,countryId,updatedDate,registeredDate&$top=1000")
        .await;
    assert_eq!(all.len(), 50);
    let ids = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["contactId"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let expect = |pred: &dyn Fn(&Value) -> bool| {
        ids(&all.iter().filter(|r| pred(r)).cloned().collect::<Vec<_>>())
    };
    let q = |filter: &str| {
        format!(
            "Contact?$select=contactId&$top=1000&$filter={}",
            urlencode(filter)
        )
    };

    let name0 = all[4]["name"].as_str().unwrap().to_string();
    let first_word = name0.split(' ').next().unwrap().to_string();
    type Pred = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (
            "contactId eq 5".to_string(),
            Box::new(|r: &Value| r["contactId"] == 5),
        ),
        (
            "contactId ne 5".to_string(),
            Box::new(|r: &Value| r["contactId"] != 5),
        ),
        (
            "contactId lt 10".to_string(),
            Box::new(|r: &Value| r["contactId"].as_i64().unwrap() < 10),
        ),
        (
            "contactId le 10".to_string(),
            Box::new(|r: &Value| r["contactId"].as_i64().unwrap() <= 10),
        ),
        (
            "contactId gt 40".to_string(),
            Box::new(|r: &Value| r["contactId"].as_i64().unwrap() > 40),
        ),
        (
            "contactId ge 40".to_string(),
            Box::new(|r: &Value| r["contactId"].as_i64().unwrap() >= 40),
        ),
        (
            "contactId between (10, 20)".to_string(),
            Box::new(|r: &Value| (10..=20).contains(&r["contactId"].as_i64().unwrap())),
        ),
        (format!("name begins '{first_word}'"), {
            let w = first_word.to_lowercase();
            Box::new(move |r: &Value| r["name"].as_str().unwrap().to_lowercase().starts_with(&w))
        }),
        (
            "name contains 'soft'".to_string(),
            Box::new(|r: &Value| r["name"].as_str().unwrap().to_lowercase().contains("soft")),
        ),
        (
            "category oneOf (1, 3)".to_string(),
            Box::new(|r: &Value| {
                ["Customer", "Partner"].contains(&r["category"].as_str().unwrap())
            }),
        ),
        (
            "countryId eq 578 and contactId gt 20".to_string(),
            Box::new(|r: &Value| r["countryId"] == 578 && r["contactId"].as_i64().unwrap() > 20),
        ),
        (
            "registeredDate before '2023-06-01'".to_string(),
            Box::new(|r: &Value| {
                ts(&r["registeredDate"]).day() < Ts::from_parts(2023, 6, 1, 0, 0, 0).day()
            }),
        ),
        (
            "updatedDate between ('2023-01-01', '2024-12-31')".to_string(),
            Box::new(|r: &Value| {
                let d = ts(&r["updatedDate"]).day();
                d >= Ts::from_parts(2023, 1, 1, 0, 0, 0).day()
                    && d <= Ts::from_parts(2024, 12, 31, 0, 0, 0).day()
            }),
        ),
    ];
    for (filter, pred) in &cases {
        let got = ids(&env.rows(&q(filter)).await);
        let want = expect(pred.as_ref());
        assert_eq!(got, want, "{filter}");
    }
    assert!(
        cases
            .iter()
            .any(|(f, p)| f.starts_with("category") && !expect(p.as_ref()).is_empty())
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn ordering_and_paging() {
    let env = Env::default().await;
    let rows = env.rows("Contact?$select=contactId,category,updatedDate&$orderBy=category desc,updatedDate asc,contactId&$top=1000").await;
    assert_eq!(rows.len(), 50);
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (ca, cb) = (
            a["category"].as_str().unwrap(),
            b["category"].as_str().unwrap(),
        );
        assert!(ca.to_lowercase() >= cb.to_lowercase());
        if ca == cb {
            assert!(ts(&a["updatedDate"]) <= ts(&b["updatedDate"]));
        }
    }
    // Pages of a general ordering concatenate to the full list ($orderby spelling too).
    let mut paged = Vec::new();
    for page in 0..6 {
        let p = env
            .rows(&format!("Contact?$select=contactId,category,updatedDate&$orderby=category desc,updatedDate asc,contactId&$top=10&$skip={}", page * 10))
            .await;
        paged.extend(p);
    }
    assert_eq!(paged, rows);
    // Keyset paging on the primary key.
    let mut last = 0;
    let mut seen = 0;
    loop {
        let page = env
            .rows(&format!(
                "Contact?$select=contactId&$filter=contactId gt {last}&$orderBy=contactId&$top=7"
            ))
            .await;
        if page.is_empty() {
            break;
        }
        seen += page.len();
        last = page.last().unwrap()["contactId"].as_i64().unwrap();
    }
    assert_eq!(seen, 50);
    let desc = env
        .rows("Contact?$select=contactId&$orderBy=contactId desc&$top=3")
        .await;
    assert_eq!(
        desc.iter()
            .map(|r| r["contactId"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [50, 49, 48]
    );
    // POST with form-encoded parameters.
    let form: Value = env
        .post("Archive/SimpleContact")
        .form(&[("$select", "contactId,name"), ("$filter", "contactId le 3")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form["value"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn top_defaults_and_maximum_are_settings() {
    let mut config = common::config();
    config.odata.default_top = 10;
    config.odata.max_top = 25;
    let env = Env::start(config).await;
    assert_eq!(env.rows("Contact?$select=contactId").await.len(), 10);
    assert_eq!(
        env.rows("Contact?$select=contactId&$top=100").await.len(),
        25
    );
    assert_eq!(env.rows("Contact?$select=contactId&$top=0").await.len(), 0);
    let bad = env.get("Contact?$top=-1").send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

/// Puts the emulator clock at `hour`:00:00 UTC of the next day and renews the token.
fn set_clock_to_next_day(env: &mut Env, hour: i64) -> Ts {
    let now = env.emu.now();
    let target = (now.day() + 1) * DAY + hour * 3600;
    let t = env.emu.advance_clock(target - now.0);
    env.token = env.emu.issue_access_token();
    t
}

#[tokio::test]
async fn date_columns_compare_the_day_only() {
    let mut env = Env::default().await;
    let t1 = set_clock_to_next_day(&mut env, 1);
    let today = t1.iso()[..10].to_string();
    let yesterday = t1.plus(-DAY).iso()[..10].to_string();
    env.patch("Contact/3")
        .json(&json!({"Department": "Early"}))
        .send()
        .await
        .unwrap();
    env.patch("Ticket/3")
        .json(&json!({"Title": "Early ticket"}))
        .send()
        .await
        .unwrap();
    env.emu.advance_clock(2 * 3600);
    env.token = env.emu.issue_access_token();
    env.patch("Contact/4")
        .json(&json!({"Department": "Late"}))
        .send()
        .await
        .unwrap();
    env.patch("Ticket/4")
        .json(&json!({"Title": "Late ticket"}))
        .send()
        .await
        .unwrap();
    // Other users edit some contacts several times in this very second.
    let report = env.emu.activity(0, 12, 0, Some(EntityType::Contact));
    let now = env.emu.now();
    assert!(report.updated.len() >= 12);

    let q = |f: &str| {
        format!(
            "Contact?$select=contactId,updatedDate&$top=1000&$filter={}",
            urlencode(f)
        )
    };
    let ids = |rows: Vec<Value>| {
        let mut v: Vec<i64> = rows
            .iter()
            .map(|r| r["contactId"].as_i64().unwrap())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut touched: Vec<i64> = report
        .updated
        .iter()
        .map(|t| i64::from(t.id))
        .chain([3, 4])
        .collect();
    touched.sort();
    touched.dedup();

    // The trap: a time of day is ignored, so 01:00 counts as "after 02:00" on the same day.
    let trap = ids(env
        .rows(&q(&format!("updatedDate afterTime '{today}T02:00:00'")))
        .await);
    assert_eq!(trap, touched, "afterTime on a date column compares days");
    assert!(
        trap.contains(&3),
        "the 01:00 edit is included although it is before 02:00"
    );
    assert_eq!(
        ids(env
            .rows(&q(&format!("updatedDate after '{yesterday}'")))
            .await),
        touched
    );
    assert!(
        env.rows(&q(&format!("updatedDate after '{today}'")))
            .await
            .is_empty(),
        "after is exclusive by default"
    );
    assert_eq!(
        ids(env
            .rows(&q(&format!("updatedDate eq '{today}T23:59:59'")))
            .await),
        touched
    );
    assert!(
        env.rows(&q(&format!("updatedDate gt '{today}T00:00:01'")))
            .await
            .is_empty()
    );
    assert_eq!(ids(env.rows(&q("updatedDate today")).await), touched);

    // Exact timestamps are in the rows, so clients can compare on their side.
    let rows = env.rows(&q(&format!("updatedDate eq '{today}'"))).await;
    let early = rows.iter().find(|r| r["contactId"] == 3).unwrap();
    assert_eq!(ts(&early["updatedDate"]), t1);
    let same_second = rows.iter().filter(|r| ts(&r["updatedDate"]) == now).count();
    assert!(same_second >= 2, "several changes share one second");

    // Date-time columns compare the full timestamp.
    let tq = |f: &str| {
        format!(
            "Ticket?$select=ticketId,lastChanged&$filter={}",
            urlencode(f)
        )
    };
    let late_only = env
        .rows(&tq(&format!("lastChanged afterTime '{today}T02:00:00'")))
        .await;
    assert_eq!(
        late_only
            .iter()
            .map(|r| r["ticketId"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4]
    );
    let both = env
        .rows(&tq(&format!("lastChanged after '{yesterday}'")))
        .await;
    assert_eq!(both.len(), 2);
    // Person's last-modified column is personUpdatedDate.
    env.patch("Person/9")
        .json(&json!({"Title": "Boss"}))
        .send()
        .await
        .unwrap();
    let persons = env
        .rows(&format!(
            "Person?$select=personId,personUpdatedDate&$filter={}",
            urlencode(&format!("personUpdatedDate after '{yesterday}'"))
        ))
        .await;
    assert_eq!(
        persons
            .iter()
            .map(|r| r["personId"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [9]
    );
}

#[tokio::test]
async fn after_inclusivity_and_time_precision_are_settings() {
    let mut config: Config = common::config();
    config.odata.after_is_inclusive = true;
    config.odata.time_ops_on_date_columns = emulator::config::TimeOpsOnDateColumns::FullPrecision;
    let mut env = Env::start(config).await;
    let t1 = set_clock_to_next_day(&mut env, 1);
    let today = t1.iso()[..10].to_string();
    env.patch("Contact/3")
        .json(&json!({"Department": "Early"}))
        .send()
        .await
        .unwrap();
    env.emu.advance_clock(2 * 3600);
    env.token = env.emu.issue_access_token();
    env.patch("Contact/4")
        .json(&json!({"Department": "Late"}))
        .send()
        .await
        .unwrap();
    let q = |f: &str| format!("Contact?$select=contactId&$filter={}", urlencode(f));
    assert_eq!(
        env.rows(&q(&format!("updatedDate after '{today}'")))
            .await
            .len(),
        2,
        "inclusive"
    );
    let exact = env
        .rows(&q(&format!("updatedDate afterTime '{today}T02:00:00'")))
        .await;
    assert_eq!(
        exact
            .iter()
            .map(|r| r["contactId"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4]
    );
}

#[tokio::test]
async fn never_updated_rows_are_part_of_the_data() {
    let mut config = common::config();
    config.counts.contacts = 400;
    config.never_updated_fraction = 0.1;
    let env = Env::start(config).await;
    let rows = env.rows("Contact?$select=contactId,updatedDate,registeredDate&$filter=updatedDate before '1900-01-01'").await;
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["updatedDate"] == "0001-01-01T00:00:00")
    );
    assert!(
        rows.iter()
            .all(|r| r["registeredDate"] != "0001-01-01T00:00:00")
    );
    // Seeded data is the same for the same seed.
    let again = Env::start({
        let mut c = common::config();
        c.counts.contacts = 400;
        c.never_updated_fraction = 0.1;
        c
    })
    .await;
    assert_eq!(
        env.emu.truth(EntityType::Contact),
        again.emu.truth(EntityType::Contact)
    );
    assert_eq!(
        env.rows("Contact?$select=contactId,name,updatedDate&$top=5")
            .await,
        again
            .rows("Contact?$select=contactId,name,updatedDate&$top=5")
            .await
    );
}
