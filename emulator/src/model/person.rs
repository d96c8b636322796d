//! Person (contact person): `PersonEntity`, archive `Person`/`RecyclePerson`, webhook entity
//! `person`. Persons are soft-deleted (`DeletedDate`) and purged later.

use std::borrow::Cow;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::contact::{assoc_cell, assoc_full, item};
use super::lists::{self, FIRST_NAMES, LAST_NAMES};
use super::{
    Audit, Cell, ColType as T, Column, Cx, Entity, EntityType, Gen, Input, Refs, col,
    json_parts as j, take, take_str, word,
};
use crate::clock::Ts;
use crate::error::SoError;

/// A contact person.
#[derive(Debug, Clone)]
pub struct Person {
    /// `PersonId`.
    pub id: i32,
    /// `Firstname`.
    pub firstname: Box<str>,
    /// `MiddleName`.
    pub middlename: Box<str>,
    /// `Lastname`.
    pub lastname: Box<str>,
    /// `Mrmrs`.
    pub mrmrs: Box<str>,
    /// `Title`.
    pub title: Box<str>,
    /// `PersonNumber`.
    pub person_number: Box<str>,
    /// `Description`.
    pub description: Box<str>,
    /// `Contact` (0 for none).
    pub contact_id: i32,
    /// `Associate` (our contact).
    pub associate_id: i32,
    /// `Position`.
    pub position_id: i32,
    /// `Country`.
    pub country_id: i32,
    /// Rank within the company.
    pub rank: i32,
    /// `NoMailing`.
    pub nomailing: bool,
    /// `Retired`.
    pub retired: bool,
    /// `BirthDate`.
    pub birth_date: Ts,
    /// Audit fields.
    pub audit: Audit,
    /// Soft-delete time.
    pub deleted: Option<Ts>,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("personId", T::Int),
    col("firstName", T::Str),
    col("lastName", T::Str),
    col("middleName", T::Str),
    col("fullName", T::Str),
    col("contactId", T::Int),
    col("mrMrs", T::Str),
    col("title", T::Str),
    col("position", T::List),
    col("personNumber", T::Str),
    col("personCountry", T::List),
    col("personCountryId", T::Int),
    col("personNoMail", T::Bool),
    col("rank", T::Int),
    col("retired", T::Bool),
    col("hasCompany", T::Bool),
    col("hasInfoText", T::Bool),
    col("personAssociateId", T::Assoc),
    col("personAssociateFullName", T::Str),
    col("personUpdatedBy", T::Assoc),
    col("personUpdatedByFullName", T::Str),
    col("personUpdatedDate", T::Date),
    col("personRegisteredBy", T::Assoc),
    col("personRegisteredByFullName", T::Str),
    col("personRegisteredDate", T::Date),
    col("personDeletedDate", T::DateTime),
    col("birthYear", T::Int),
];

impl Person {
    /// First, middle and last name.
    pub fn full_name(&self) -> String {
        let parts = [&*self.firstname, &*self.middlename, &*self.lastname];
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Entity for Person {
    const TYPE: EntityType = EntityType::Person;
    const TYPED: &'static [&'static str] = &[
        "firstname",
        "middlename",
        "lastname",
        "mrmrs",
        "title",
        "personnumber",
        "description",
        "contact",
        "associate",
        "position",
        "country",
        "nomailing",
        "retired",
        "birthdate",
    ];
    const DERIVED: &'static [&'static str] = &[
        "updateddate",
        "createddate",
        "updatedby",
        "createdby",
        "isassociate",
        "fullname",
        "formalname",
        "activeinterests",
        "activeerplinks",
        "bounceemails",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "emails",
        "privatephones",
        "faxes",
        "mobilephones",
        "officephones",
        "otherphones",
        "interests",
        "urls",
        "address",
        "chatemails",
        "internetphones",
        "shipmenttypes",
        "consents",
        "userdefinedfields",
        "extrafields",
        "customfields",
        "utmparameters",
    ];

    fn id(&self) -> i32 {
        self.id
    }
    fn set_id(&mut self, id: i32) {
        self.id = id;
    }
    fn audit(&self) -> &Audit {
        &self.audit
    }
    fn audit_mut(&mut self) -> &mut Audit {
        &mut self.audit
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        self.extra.as_deref()
    }
    fn extra_mut(&mut self) -> &mut Option<Box<Map<String, Value>>> {
        &mut self.extra
    }
    fn deleted_at(&self) -> Option<Ts> {
        self.deleted
    }
    fn set_deleted_at(&mut self, at: Option<Ts>) {
        self.deleted = at;
    }

    fn blank() -> Self {
        Person {
            id: 0,
            firstname: "".into(),
            middlename: "".into(),
            lastname: "".into(),
            mrmrs: "".into(),
            title: "".into(),
            person_number: "".into(),
            description: "".into(),
            contact_id: 0,
            associate_id: 0,
            position_id: 0,
            country_id: 0,
            rank: 0,
            nomailing: false,
            retired: false,
            birth_date: Ts::MIN,
            audit: Audit::created(Ts::MIN, 0),
            deleted: None,
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        let full = self.full_name();
        j::put(
            m,
            vec![
                ("PersonId", json!(self.id)),
                ("Firstname", json!(&*self.firstname)),
                ("MiddleName", json!(&*self.middlename)),
                ("Lastname", json!(&*self.lastname)),
                ("Mrmrs", json!(&*self.mrmrs)),
                ("Title", json!(&*self.title)),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("BirthDate", cx.ts(self.birth_date)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("Emails", json!([])),
                ("Description", json!(&*self.description)),
                ("IsAssociate", json!(false)),
                ("PrivatePhones", json!([])),
                ("Faxes", json!([])),
                ("MobilePhones", json!([])),
                ("OfficePhones", json!([])),
                ("OtherPhones", json!([])),
                ("Position", j::list_item(lists::POSITIONS, self.position_id)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                ("Contact", j::contact_summary(cx, self.contact_id)),
                ("Country", j::country(self.country_id)),
                ("Interests", json!([])),
                ("PersonNumber", json!(&*self.person_number)),
                ("FullName", json!(full)),
                ("NoMailing", json!(self.nomailing)),
                ("UsePersonAddress", json!(false)),
                ("Retired", json!(self.retired)),
                ("Urls", json!([])),
                (
                    "FormalName",
                    json!(format!("{} {}", self.mrmrs, full).trim()),
                ),
                ("Address", j::empty_address()),
                ("Post3", json!("")),
                ("Post2", json!("")),
                ("Post1", json!("")),
                ("Kanalname", json!("")),
                ("Kanafname", json!("")),
                ("CorrespondingAssociate", Value::Null),
                ("Category", Value::Null),
                ("Business", Value::Null),
                ("Associate", j::associate(self.associate_id)),
                ("Salutation", json!("")),
                ("ActiveInterests", json!(0)),
                ("SupportAssociate", Value::Null),
                ("TicketPriority", Value::Null),
                ("CustomerLanguage", Value::Null),
                ("DbiAgentId", json!(0)),
                ("DbiKey", json!("")),
                ("DbiLastModified", cx.ts(Ts::MIN)),
                ("DbiLastSyncronized", cx.ts(Ts::MIN)),
                ("SentInfo", json!(0)),
                ("ShowContactTickets", json!(0)),
                ("UserInfo", Value::Null),
                ("ChatEmails", json!([])),
                ("InternetPhones", json!([])),
                ("Source", json!(0)),
                ("ActiveErpLinks", json!(0)),
                ("ShipmentTypes", json!([])),
                ("Consents", json!([])),
                ("BounceEmails", json!([])),
                ("ActiveStatusMonitorId", json!(0)),
                ("CreatedByFormId", json!(0)),
                ("UtmParameters", Value::Null),
                ("LeadstatusId", json!(0)),
                ("Leadstatus", json!("")),
            ],
        );
        j::udf_trio(m, true);
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.firstname, i.string("firstname")?);
        take_str(&mut self.middlename, i.string("middlename")?);
        take_str(&mut self.lastname, i.string("lastname")?);
        take_str(&mut self.mrmrs, i.string("mrmrs")?);
        take_str(&mut self.title, i.string("title")?);
        take_str(&mut self.person_number, i.string("personnumber")?);
        take_str(&mut self.description, i.string("description")?);
        take(
            &mut self.contact_id,
            i.nested_id("contact", &["ContactId"])?,
        );
        take(
            &mut self.associate_id,
            i.nested_id("associate", &["AssociateId"])?,
        );
        take(&mut self.position_id, i.nested_id("position", &["Id"])?);
        take(
            &mut self.country_id,
            i.nested_id("country", &["CountryId"])?,
        );
        take(&mut self.nomailing, i.bool("nomailing")?);
        take(&mut self.retired, i.bool("retired")?);
        take(&mut self.birth_date, i.ts("birthdate")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("firstname", json!(&*self.firstname)),
            ("middleName", json!(&*self.middlename)),
            ("lastname", json!(&*self.lastname)),
            ("mrmrs", json!(&*self.mrmrs)),
            ("title", json!(&*self.title)),
            ("person_number", json!(&*self.person_number)),
            ("text_id", json!(&*self.description)),
            ("contact_id", json!(self.contact_id)),
            ("associate_id", json!(self.associate_id)),
            ("position_idx", json!(self.position_id)),
            ("country_id", json!(self.country_id)),
            ("nomailing", json!(self.nomailing)),
            ("retired", json!(self.retired)),
            ("year_of_birth", json!(self.birth_date.0)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("activeInterests", json!(0)),
                ("associate_id", json!(self.associate_id)),
                ("business_idx", json!(0)),
                ("category_idx", json!(0)),
                ("contact_id", json!(self.contact_id)),
                ("country_id", json!(self.country_id)),
                ("DeletedDate", cx.ts(self.deleted.unwrap_or(Ts::MIN))),
                ("group_id", json!(1)),
                ("person_id", json!(self.id)),
                ("position_idx", json!(self.position_id)),
                ("registered", cx.ts(self.audit.created)),
                ("registered_associate_id", json!(self.audit.created_by)),
                ("retired", json!(i32::from(self.retired))),
                ("source", json!(0)),
                ("updated", cx.ts(self.audit.updated)),
                ("updated_associate_id", json!(self.audit.updated_by)),
                ("userdef2_id", json!(0)),
                ("userdef_id", json!(0)),
            ],
        );
        m
    }

    fn delete_values(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("associate_id".into(), json!(self.associate_id));
        m.insert("contact_id".into(), json!(self.contact_id));
        m.insert("person_id".into(), json!(self.id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "personId" => Cell::Int(self.id.into()),
            "firstName" => Cell::Str(Cow::Borrowed(&self.firstname)),
            "lastName" => Cell::Str(Cow::Borrowed(&self.lastname)),
            "middleName" => Cell::Str(Cow::Borrowed(&self.middlename)),
            "fullName" => Cell::Str(Cow::Owned(self.full_name())),
            "contactId" => Cell::Int(self.contact_id.into()),
            "mrMrs" => Cell::Str(Cow::Borrowed(&self.mrmrs)),
            "title" => Cell::Str(Cow::Borrowed(&self.title)),
            "position" => item(lists::POSITIONS, self.position_id),
            "personNumber" => Cell::Str(Cow::Borrowed(&self.person_number)),
            "personCountry" => Cell::Item(
                self.country_id.into(),
                Cow::Borrowed(
                    lists::country(self.country_id)
                        .map(|c| c.name)
                        .unwrap_or(""),
                ),
            ),
            "personCountryId" => Cell::Int(self.country_id.into()),
            "personNoMail" => Cell::Bool(self.nomailing),
            "rank" => Cell::Int(self.rank.into()),
            "retired" => Cell::Bool(self.retired),
            "hasCompany" => Cell::Bool(self.contact_id != 0),
            "hasInfoText" => Cell::Bool(!self.description.is_empty()),
            "personAssociateId" => assoc_cell(self.associate_id),
            "personAssociateFullName" => assoc_full(self.associate_id),
            "personUpdatedBy" => assoc_cell(a.updated_by),
            "personUpdatedByFullName" => assoc_full(a.updated_by),
            "personUpdatedDate" => Cell::Time(a.updated),
            "personRegisteredBy" => assoc_cell(a.created_by),
            "personRegisteredByFullName" => assoc_full(a.created_by),
            "personRegisteredDate" => Cell::Time(a.created),
            "personDeletedDate" => Cell::Time(self.deleted.unwrap_or(Ts::MIN)),
            "birthYear" => Cell::Int(if self.birth_date.is_min() {
                0
            } else {
                crate::clock::civil_from_days(self.birth_date.day()).0
            }),
            _ => Cell::Null,
        }
    }

    fn seed(g: &mut Gen<'_>) -> Self {
        let audit = g.audit();
        let mut p = Person::blank();
        p.contact_id = Refs::pick(g.rng, g.refs.contacts, 5);
        let rng = &mut *g.rng;
        p.firstname = word(rng, FIRST_NAMES);
        p.lastname = word(rng, LAST_NAMES);
        if rng.gen_range(0..8) == 0 {
            p.middlename = word(rng, FIRST_NAMES);
        }
        p.mrmrs = if rng.gen_bool(0.5) { "Mr" } else { "Ms" }.into();
        p.title = word(rng, &["", "Manager", "Engineer", "Director", "Consultant"]);
        p.rank = rng.gen_range(1..10);
        p.associate_id = rng.gen_range(lists::OTHER_USERS);
        p.birth_date = if rng.gen_range(0..3) == 0 {
            Ts::MIN
        } else {
            Ts::from_parts(
                rng.gen_range(1950..2003),
                rng.gen_range(1..=12),
                rng.gen_range(1..=28),
                0,
                0,
                0,
            )
        };
        p.position_id = g.item(lists::POSITIONS);
        p.country_id = g.pick(lists::COUNTRIES).id;
        p.audit = audit;
        p
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, refs: &Refs) {
        match rng.gen_range(0..4) {
            0 => {
                self.title = word(
                    rng,
                    &["Manager", "Engineer", "Director", "Consultant", "Lead"],
                )
            }
            1 => self.position_id = lists::POSITIONS[rng.gen_range(0..lists::POSITIONS.len())].id,
            2 => self.lastname = word(rng, LAST_NAMES),
            _ => self.contact_id = Refs::pick(rng, refs.contacts, 0),
        }
    }
}
