//! JSON building blocks shared by the entities: nested carriers (Associate, Category, Country,
//! summary Contact/Person/Project/Sale objects) and the common tail of every entity.

use serde_json::{Map, Value, json};

use super::Cx;
use super::lists::{self, Item};
use crate::clock::Ts;

/// `TableRight` of a top-level entity: full rights.
pub fn table_right() -> Value {
    json!({"Mask": "Delete", "Reason": ""})
}

/// Appends `TableRight` and `FieldProperties` (every entity definition ends with them).
pub fn tail(m: &mut Map<String, Value>) {
    m.insert("TableRight".into(), table_right());
    m.insert("FieldProperties".into(), json!({}));
}

/// The `UserDefinedFields`/`ExtraFields`/`CustomFields` trio, empty.
pub fn udf_trio(m: &mut Map<String, Value>, with_udf: bool) {
    if with_udf {
        m.insert("UserDefinedFields".into(), json!({}));
    }
    m.insert("ExtraFields".into(), json!({}));
    m.insert("CustomFields".into(), json!({}));
}

/// The publish block (`PublishEventDate`, `PublishTo`, `PublishFrom`, `IsPublished`).
pub fn publish(m: &mut Map<String, Value>, cx: &Cx<'_>) {
    m.insert("PublishEventDate".into(), cx.ts(Ts::MIN));
    m.insert("PublishTo".into(), cx.ts(Ts::MIN));
    m.insert("PublishFrom".into(), cx.ts(Ts::MIN));
    m.insert("IsPublished".into(), json!(false));
}

/// An `Associate` carrier, or null for id 0 / unknown ids.
pub fn associate(id: i32) -> Value {
    let Some(a) = lists::associate(id) else {
        return Value::Null;
    };
    let full = a.full_name();
    json!({
        "AssociateId": a.id,
        "Name": a.name,
        "PersonId": 1000 + a.id,
        "Rank": a.id,
        "Tooltip": full,
        "Type": a.kind,
        "GroupIdx": 1,
        "FullName": full,
        "FormalName": full,
        "Deleted": false,
        "EjUserId": 0,
        "UserName": a.name,
        "ExtraFields": {},
        "CustomFields": {},
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// A simple `{Id, Value, Tooltip}` list carrier, or null for 0.
pub fn list_item(list: &'static [Item], id: i32) -> Value {
    if id == 0 {
        return Value::Null;
    }
    json!({
        "Id": id,
        "Value": lists::label(list, id),
        "Tooltip": "",
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// A `Category` carrier.
pub fn category(id: i32) -> Value {
    if id == 0 {
        return Value::Null;
    }
    let group = match id {
        1 => "Customer",
        2 => "PotentialCustomer",
        3 => "Partner",
        5 => "Lost",
        _ => "Other",
    };
    json!({
        "Id": id,
        "Value": lists::label(lists::CATEGORIES, id),
        "Tooltip": "",
        "CategoryGroup": group,
        "EnableLeadStatus": false,
        "Rank": id,
        "Deleted": false,
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// A `Country` carrier.
pub fn country(id: i32) -> Value {
    let Some(c) = lists::country(id) else {
        return Value::Null;
    };
    json!({
        "CountryId": c.id,
        "Name": c.name,
        "CurrencyId": c.currency,
        "EnglishName": c.name,
        "TwoLetterISOCountry": c.iso2,
        "ThreeLetterISOCountry": c.iso3,
        "ImageDescription": "",
        "OrgNrText": "Org.nr",
        "InterAreaPrefix": "00",
        "DialInPrefix": c.dial,
        "ZipPrefix": c.iso2,
        "DomainName": c.domain,
        "AddressLayoutId": 1,
        "DomesticAddressLayoutId": 1,
        "ForeignAddressLayoutId": 1,
        "Rank": 0,
        "Tooltip": "",
        "Deleted": false,
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// An empty `Address` carrier (postal and street parts blank).
pub fn empty_address() -> Value {
    let part = |kind: &str| {
        json!({
            "AtypeIdx": kind,
            "Address1": "",
            "Address2": "",
            "Address3": "",
            "City": "",
            "County": "",
            "State": "",
            "Zipcode": "",
            "Formatted": "",
        })
    };
    json!({
        "Wgs84Latitude": 0.0,
        "Wgs84Longitude": 0.0,
        "LocalizedAddress": [],
        "Street": part("ContactStreetAddress"),
        "Postal": part("ContactPostalAddress"),
        "Formatted": "",
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// The summary `Contact` carrier nested in persons, sales, appointments, …; null for 0.
pub fn contact_summary(cx: &Cx<'_>, id: i32) -> Value {
    let Some(c) = cx.db.contacts.get(id) else {
        return Value::Null;
    };
    let assoc = lists::associate(c.associate_id)
        .map(|a| a.full_name())
        .unwrap_or_default();
    let full = if c.department.is_empty() {
        c.name.to_string()
    } else {
        format!("{} {}", c.name, c.department)
    };
    json!({
        "ContactId": c.id,
        "Name": &*c.name,
        "OrgNr": &*c.orgnr,
        "Department": &*c.department,
        "URL": "",
        "City": "",
        "DirectPhone": "",
        "AssociateId": c.associate_id,
        "CountryId": c.country_id,
        "EmailAddress": "",
        "Kananame": "",
        "EmailAddressName": "",
        "URLName": "",
        "AssociateFullName": assoc,
        "BusinessName": lists::label(lists::BUSINESSES, c.business_id),
        "CategoryName": lists::label(lists::CATEGORIES, c.category_id),
        "CountryName": lists::country(c.country_id).map(|x| x.name).unwrap_or(""),
        "Address": null,
        "FormattedAddress": "",
        "FullName": full,
        "IsOwnerContact": false,
        "ActiveErpLinks": 0,
        "Number1": &*c.number1,
        "Number2": &*c.number2,
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// The summary `Person` carrier; null for 0.
pub fn person_summary(cx: &Cx<'_>, id: i32) -> Value {
    let Some(p) = cx.db.persons.get(id) else {
        return Value::Null;
    };
    let contact = cx.db.contacts.get(p.contact_id);
    json!({
        "Position": lists::label(lists::POSITIONS, p.position_id),
        "PersonId": p.id,
        "Mrmrs": &*p.mrmrs,
        "Firstname": &*p.firstname,
        "Lastname": &*p.lastname,
        "MiddleName": &*p.middlename,
        "Title": &*p.title,
        "Description": "",
        "Email": "",
        "FullName": p.full_name(),
        "DirectPhone": "",
        "FormalName": p.full_name(),
        "CountryId": p.country_id,
        "ContactId": p.contact_id,
        "ContactName": contact.map(|c| &*c.name).unwrap_or(""),
        "Retired": i32::from(p.retired),
        "Rank": p.rank,
        "ActiveInterests": 0,
        "ContactDepartment": contact.map(|c| &*c.department).unwrap_or(""),
        "ContactCountryId": contact.map(|c| c.country_id).unwrap_or(0),
        "ContactOrgNr": contact.map(|c| &*c.orgnr).unwrap_or(""),
        "FaxPhone": "",
        "MobilePhone": "",
        "ContactPhone": "",
        "AssociateName": lists::associate(p.associate_id).map(|a| a.name).unwrap_or(""),
        "AssociateId": p.associate_id,
        "UsePersonAddress": false,
        "ContactFax": "",
        "Kanafname": "",
        "Kanalname": "",
        "Post1": "",
        "Post2": "",
        "Post3": "",
        "EmailName": "",
        "ContactFullName": contact.map(|c| &*c.name).unwrap_or(""),
        "ActiveErpLinks": 0,
        "TicketPriorityId": 0,
        "SupportLanguageId": 0,
        "SupportAssociateId": 0,
        "CategoryName": "",
        "PersonNumber": &*p.person_number,
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// The summary `Project` carrier; null for 0.
pub fn project_summary(cx: &Cx<'_>, id: i32) -> Value {
    let Some(p) = cx.db.projects.get(id) else {
        return Value::Null;
    };
    json!({
        "ProjectId": p.id,
        "Name": &*p.name,
        "Description": &*p.description,
        "URL": "",
        "Type": lists::label(lists::PROJECT_TYPES, p.type_id),
        "AssociateId": p.associate_id,
        "AssociateFullName": lists::associate(p.associate_id).map(|a| a.full_name()).unwrap_or_default(),
        "TypeId": p.type_id,
        "Updated": cx.ts(p.audit.updated),
        "StatusId": p.status_id,
        "Status": lists::label(lists::PROJECT_STATUSES, p.status_id),
        "TextId": 0,
        "PublishTo": cx.ts(Ts::MIN),
        "PublishFrom": cx.ts(Ts::MIN),
        "IsPublished": false,
        "URLName": "",
        "ProjectNumber": &*p.project_number,
        "ActiveErpLinks": 0,
        "EventId": 0,
        "StartDate": cx.ts(p.start_date),
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// The summary `Sale` carrier; null for 0.
pub fn sale_summary(cx: &Cx<'_>, id: i32) -> Value {
    let Some(s) = cx.db.sales.get(id) else {
        return Value::Null;
    };
    let contact = cx.db.contacts.get(s.contact_id);
    let person = cx.db.persons.get(s.person_id);
    let project = cx.db.projects.get(s.project_id);
    json!({
        "ContactName": contact.map(|c| &*c.name).unwrap_or(""),
        "SaleDate": cx.ts(s.saledate),
        "SaleId": s.id,
        "Probability": s.probability,
        "Title": &*s.heading,
        "Amount": s.amount,
        "Currency": lists::label(lists::CURRENCIES, s.currency_id),
        "ProjectName": project.map(|p| &*p.name).unwrap_or(""),
        "AssociateFullName": lists::associate(s.associate_id).map(|a| a.full_name()).unwrap_or_default(),
        "Description": &*s.description,
        "Status": lists::label(lists::SALE_STATUSES, i32::from(s.status)),
        "WeightedAmount": s.amount * f64::from(s.probability) / 100.0,
        "ProjectId": s.project_id,
        "EarningPercent": s.earning_percent(),
        "Earning": s.earning,
        "ContactId": s.contact_id,
        "AssociateId": s.associate_id,
        "PersonId": s.person_id,
        "SaleTypeId": s.sale_type_id,
        "SaleTypeName": lists::label(lists::SALE_TYPES, s.sale_type_id),
        "PersonFullName": person.map(|p| p.full_name()).unwrap_or_default(),
        "Completed": lists::label(lists::COMPLETED, i32::from(s.completed)),
        "ActiveErpLinks": 0,
        "NextDueDate": cx.ts(s.next_due),
        "Number": &*s.number,
        "TableRight": null,
        "FieldProperties": {},
    })
}

/// Writes key/value pairs into a map (keeps the entity renderers short).
pub fn put(m: &mut Map<String, Value>, pairs: Vec<(&str, Value)>) {
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
}
