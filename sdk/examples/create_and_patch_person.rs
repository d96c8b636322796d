//! Create a person (from the `/default` template, then POST), patch it with JSON Patch, then
//! with a merge patch guarded by `If-Unmodified-Since`.
//!
//! ```sh
//! cargo run -p superoffice --example create_and_patch_person
//! ```

#[path = "common/mod.rs"]
mod common;

use superoffice::Error;
use superoffice::entity::Person;
use superoffice::types::JsonPatch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _emulator) = common::connect().await?;
    let persons = client.entity::<Person>();

    let person = persons
        .create_with(|p| {
            p.firstname = Some("Ada".into());
            p.lastname = Some("Lovelace".into());
        })
        .await?;
    let id = person.person_id.ok_or("the server answered no PersonId")?;
    println!(
        "created person {id}: {} {}",
        person.firstname.unwrap_or_default(),
        person.lastname.unwrap_or_default()
    );

    let ops: Vec<JsonPatch> = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/Firstname", "value": "Ada" },
        { "op": "replace", "path": "/Title", "value": "Analyst" }
    ]))?;
    let patched = persons.patch(id, &ops, None).await?;
    println!("JSON Patch: title is now {:?}", patched.title);

    let read_at = chrono::Utc::now() + chrono::Duration::seconds(1);
    let merged = persons
        .merge_patch(
            id,
            &serde_json::json!({ "Title": "Countess" }),
            Some(read_at),
        )
        .await?;
    println!("merge patch: title is now {:?}", merged.title);

    let stale = chrono::Utc::now() - chrono::Duration::days(1);
    match persons
        .merge_patch(
            id,
            &serde_json::json!({ "Title": "Lost update" }),
            Some(stale),
        )
        .await
    {
        Err(Error::PreconditionFailed(_)) => {
            println!("a write based on a stale read is refused (412), as it should be")
        }
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
