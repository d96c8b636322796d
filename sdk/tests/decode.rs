//! Decoding real-shaped SuperOffice JSON with the generated types.
//!
//! The payloads are written by hand following `FACTS.md` and the documented examples: null
//! nested objects, null arrays and maps, missing fields, offset-less and offset dates,
//! `0001-01-01T00:00:00`, a fractional number in an integer field, OData slim rows, unknown
//! enum values and `[Flags]` combinations, and a GET → PUT round trip that keeps unknown fields.

#![recursion_limit = "256"]

use serde_json::{Value, json};
use superoffice::SoDateTime;
use superoffice::types::{
    AssociateType, ContactEntity, ContactEntityWithLinks, JsonPatch, JsonPatchOp,
    ODataSlimResponse, SelectionEntity, SoError, Webhook, WebhookNotifyWhen, WebhookState,
};

/// A contact as `GET /api/v1/Contact/{id}` returns it: 48 keys, many of them null.
fn contact_json() -> Value {
    json!({
        "ContactId": 123,
        "Name": "Amadeus AS",
        "Department": "",
        "OrgNr": "NO 938 262 184",
        "Number1": "10023",
        "Number2": "",
        "UpdatedDate": "2024-03-05T14:22:10",
        "CreatedDate": "2019-11-02T08:01:33.547",
        "Emails": [{ "Value": "post@amadeus.example", "StrippedValue": "post@amadeus.example", "Description": "", "TableRight": null, "FieldProperties": {} }],
        "Interests": null,
        "Urls": [],
        "Phones": null,
        "Faxes": null,
        "Description": null,
        "UpdatedBy": { "AssociateId": 5, "Name": "SAL", "Type": "InternalAssociate", "Deleted": false },
        "CreatedBy": null,
        "Associate": { "AssociateId": 5, "Name": "SAL", "FullName": "Sally Sales", "Type": "SomeFutureType" },
        "Business": { "Id": 3, "Value": "Software" },
        "Category": { "Id": 4, "Value": "Customer" },
        "Country": null,
        "Persons": null,
        "NoMailing": false,
        "Kananame": null,
        "Xstop": false,
        "ActiveInterests": 0,
        "GroupId": 2,
        "ActiveStatusMonitorId": 0,
        "SupportAssociate": null,
        "TicketPriority": null,
        "CustomerLanguage": null,
        "Deleted": 0,
        "DbiAgentId": 0,
        "DbiLastSyncronized": "0001-01-01T00:00:00",
        "DbiKey": null,
        "DbiLastModified": "2025-05-14T10:48:07.8912039Z",
        "SupportPerson": null,
        "Address": null,
        "Source": 0,
        "ActiveErpLinks": 0,
        "BounceEmails": null,
        "Domains": null,
        "UtmParameters": null,
        "UserDefinedFields": { "SuperOffice:1": "[I:42]" },
        "ExtraFields": null,
        "CustomFields": {},
        "TableRight": { "Mask": "Select, Update, Delete", "Reason": "" },
        "FieldProperties": { "Name": { "FieldRight": { "Mask": "FULL", "Reason": "" }, "FieldType": "System.String", "FieldLength": 220 } },
        "_Links": { "Self": "https://sod.superoffice.com/Cust12345/api/v1/Contact/123" }
    })
}

#[test]
fn a_realistic_contact_decodes() {
    let contact: ContactEntityWithLinks =
        serde_json::from_value(contact_json()).expect("contact decodes");
    assert_eq!(contact.contact_id, Some(123));
    assert_eq!(contact.phones, None, "null array");
    assert_eq!(contact.extra_fields, None, "null map");
    assert_eq!(contact.country, None, "null nested object");
    assert_eq!(contact.urls, Some(vec![]));
    let updated = contact.updated_date.expect("date");
    assert_eq!(updated.to_string(), "2024-03-05T14:22:10");
    assert_eq!(updated.offset(), None);
    assert!(contact.dbi_last_syncronized.expect("date").is_unset());
    assert_eq!(
        contact
            .dbi_last_modified
            .expect("date")
            .to_utc()
            .to_rfc3339(),
        "2025-05-14T10:48:07.891203900+00:00"
    );
    assert_eq!(
        contact.updated_by.and_then(|a| a.type_),
        Some(AssociateType::InternalAssociate)
    );
    let associate_type = contact.associate.and_then(|a| a.type_).expect("type");
    assert_eq!(
        associate_type,
        AssociateType::Unrecognized("SomeFutureType".into())
    );
    assert!(!associate_type.is_known());
    assert_eq!(
        contact
            .user_defined_fields
            .as_ref()
            .and_then(|u| u.get("SuperOffice:1"))
            .map(String::as_str),
        Some("[I:42]")
    );
}

#[test]
fn missing_fields_are_none() {
    let contact: ContactEntity = serde_json::from_value(json!({ "ContactId": 7 })).unwrap();
    assert_eq!(contact.contact_id, Some(7));
    assert_eq!(contact.name, None);
    assert_eq!(contact.emails, None);
    assert_eq!(contact.updated_date, None);
}

#[test]
fn dates_with_and_without_offsets() {
    for (text, utc) in [
        ("2024-03-05T14:22:10", "2024-03-05T14:22:10+00:00"),
        ("2024-03-05T14:22:10Z", "2024-03-05T14:22:10+00:00"),
        (
            "2024-03-05T14:22:10.89+02:00",
            "2024-03-05T12:22:10.890+00:00",
        ),
        (
            "2024-03-05T14:22:10.1234567",
            "2024-03-05T14:22:10.123456700+00:00",
        ),
    ] {
        let contact: ContactEntity =
            serde_json::from_value(json!({ "UpdatedDate": text })).unwrap();
        let date: SoDateTime = contact.updated_date.unwrap();
        assert_eq!(date.to_string(), text, "written back as received");
        assert_eq!(date.to_utc().to_rfc3339(), utc);
    }
    assert!(
        serde_json::from_value::<ContactEntity>(json!({ "UpdatedDate": "not a date" })).is_err()
    );
}

#[test]
fn a_fractional_number_in_an_integer_field_decodes() {
    // Sample payloads in SuperOffice's docs carry `MemberCount: 99.99`.
    let selection: SelectionEntity =
        serde_json::from_value(json!({ "SelectionId": 3, "MemberCount": 99.99 })).unwrap();
    assert_eq!(selection.member_count, Some(99));
    let contact: ContactEntity = serde_json::from_value(json!({ "ContactId": 12.0 })).unwrap();
    assert_eq!(contact.contact_id, Some(12));
    assert!(serde_json::from_value::<ContactEntity>(json!({ "ContactId": "twelve" })).is_err());
}

#[test]
fn odata_slim_rows_are_scalar_maps() {
    let page: ODataSlimResponse = serde_json::from_value(json!({
        "odata.metadata": "https://sod.superoffice.com/Cust12345/api/v1/archive$metadata",
        "odata.nextLink": null,
        "value": [
            { "PrimaryKey": "25", "EntityName": "contact", "contactId": 25, "name": "Amadeus AS", "updatedDate": "2024-03-05T00:00:00" },
            { "PrimaryKey": "26", "EntityName": "contact", "contactId": 26, "name": null, "updatedDate": "0001-01-01T00:00:00" }
        ]
    }))
    .unwrap();
    let rows = page.value.expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["PrimaryKey"], "25");
    assert_eq!(rows[0]["contactId"], 25);
    assert_eq!(rows[1]["name"], Value::Null);
    assert_eq!(page.odata_next_link, None);
}

#[test]
fn unknown_enum_values_and_flags_combinations_decode() {
    let webhook: Webhook = serde_json::from_value(json!({
        "WebhookId": 1,
        "Name": "acme-sync",
        "Events": ["contact.created", "contact.changed"],
        "State": "TooManyErrors",
        "NotifyWhen": "FirstFailure, Disabling",
        "NotifyVia": "CarrierPigeon",
        "Properties": { "answer": 42, "nested": { "a": [1, 2] } },
        "Headers": null
    }))
    .unwrap();
    assert_eq!(webhook.state, Some(WebhookState::TooManyErrors));
    let notify = webhook.notify_when.expect("flags");
    assert!(!notify.is_known());
    assert_eq!(
        notify.flags(),
        vec![
            WebhookNotifyWhen::FirstFailure,
            WebhookNotifyWhen::Disabling
        ]
    );
    assert_eq!(
        serde_json::to_value(&notify).unwrap(),
        json!("FirstFailure, Disabling"),
        "written back verbatim"
    );
    assert_eq!(
        webhook.notify_via.map(|v| v.to_string()).as_deref(),
        Some("CarrierPigeon")
    );
    assert_eq!(
        webhook.properties.and_then(|p| p.get("answer").cloned()),
        Some(json!(42))
    );
    // An enum sent as a number survives too.
    let webhook: Webhook = serde_json::from_value(json!({ "State": 3 })).unwrap();
    assert_eq!(webhook.state, Some(WebhookState::Unrecognized("3".into())));
}

#[test]
fn json_patch_values_are_any_json() {
    let patch: Vec<JsonPatch> = serde_json::from_value(json!([
        { "op": "replace", "path": "/Name", "value": "New Name" },
        { "op": "add", "path": "/Phones/-", "value": { "Value": "+47 22 00 00 00" } },
        { "op": "test", "path": "/ContactId", "value": 123 },
        { "op": "remove", "path": "/Department" }
    ]))
    .unwrap();
    assert_eq!(patch[0].op, Some(JsonPatchOp::Replace));
    assert_eq!(patch[0].value, Some(json!("New Name")));
    assert_eq!(patch[1].value, Some(json!({ "Value": "+47 22 00 00 00" })));
    assert_eq!(patch[3].value, None);
}

#[test]
fn error_bodies_decode() {
    let error: SoError = serde_json::from_value(json!({
        "Error": true,
        "ErrorType": "SoNotFoundException",
        "ErrorMessage": "Contact id 99999 not found",
        "ErrorSource": "SuperOffice.Services.Implementation"
    }))
    .unwrap();
    assert_eq!(error.error_type.as_deref(), Some("SoNotFoundException"));
}

#[test]
fn get_then_put_keeps_unknown_fields_and_values() {
    let mut received = contact_json();
    // Fields a newer server version might add.
    received["LoyaltyTier"] = json!("Gold");
    received["Segments"] = json!([{ "Id": 1 }]);
    let contact: ContactEntityWithLinks = serde_json::from_value(received.clone()).unwrap();
    let sent = serde_json::to_value(&contact).unwrap();

    // Every value comes back unchanged; nulls may be omitted (absent = unchanged on PUT).
    assert_eq!(without_nulls(&sent), without_nulls(&received));
    let received = received.as_object().unwrap();
    let sent = sent.as_object().unwrap();
    assert_eq!(sent["LoyaltyTier"], "Gold");
    assert!(
        sent.keys().all(|k| received.contains_key(k)),
        "nothing invented"
    );

    // Into the PUT body type (ContactEntity has no `_Links`; unknown fields still travel).
    let put: ContactEntity = serde_json::from_value(Value::Object(sent.clone())).unwrap();
    let body = serde_json::to_value(&put).unwrap();
    assert_eq!(body["LoyaltyTier"], "Gold");
    assert_eq!(body["TableRight"]["Mask"], "Select, Update, Delete");
    assert_eq!(body["DbiLastModified"], "2025-05-14T10:48:07.8912039Z");
}

/// The value with every `null` object member removed, recursively.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// A builder that names only known fields builds: the unknown-fields map (`extra`) defaults to
/// empty, and serializing adds nothing for it.
#[test]
fn a_builder_with_known_fields_only_builds() {
    let hook = Webhook::try_from(
        Webhook::builder()
            .name(Some("syncd-Cust1".to_string()))
            .state(Some(WebhookState::Active)),
    )
    .expect("a Webhook without unknown fields");
    assert!(hook.extra.is_empty());
    let json = serde_json::to_value(&hook).unwrap();
    assert_eq!(json["Name"], "syncd-Cust1");
    assert_eq!(json["State"], "Active");
}
