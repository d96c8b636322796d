//! Contact (company): `ContactEntity`, archive `SimpleContact`/`RecycleContact`, webhook
//! entity `contact`. Contacts are soft-deleted (`DeletedDate`) and purged later.

use std::borrow::Cow;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::lists::{self, COMPANY_FORMS, COMPANY_TRADES, COMPANY_WORDS, DEPARTMENTS};
use super::{
    Audit, Cell, ColType as T, Column, Cx, Entity, EntityType, Gen, Input, Refs, col,
    json_parts as j, take, take_str, word,
};
use crate::clock::Ts;
use crate::error::SoError;

/// A company.
#[derive(Debug, Clone)]
pub struct Contact {
    /// `ContactId`.
    pub id: i32,
    /// `Name`.
    pub name: Box<str>,
    /// `Department`.
    pub department: Box<str>,
    /// `OrgNr`.
    pub orgnr: Box<str>,
    /// `Number1` (archive column `number`).
    pub number1: Box<str>,
    /// `Number2` (archive column `code`).
    pub number2: Box<str>,
    /// `Description`.
    pub description: Box<str>,
    /// `Associate` (our contact).
    pub associate_id: i32,
    /// `Category`.
    pub category_id: i32,
    /// `Business`.
    pub business_id: i32,
    /// `Country`.
    pub country_id: i32,
    /// `NoMailing`.
    pub nomailing: bool,
    /// `Xstop`.
    pub xstop: bool,
    /// Audit fields.
    pub audit: Audit,
    /// Soft-delete time.
    pub deleted: Option<Ts>,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("contactId", T::Int),
    col("name", T::Str),
    col("department", T::Str),
    col("nameDepartment", T::Str),
    col("orgnr", T::Str),
    col("number", T::Str),
    col("code", T::Str),
    col("associateId", T::Assoc),
    col("category", T::List),
    col("business", T::List),
    col("country", T::List),
    col("countryId", T::Int),
    col("stop", T::Bool),
    col("contactNoMail", T::Bool),
    col("hasInfoText", T::Bool),
    col("updatedBy", T::Assoc),
    col("updatedByFullName", T::Str),
    col("updatedDate", T::Date),
    col("registeredBy", T::Assoc),
    col("registeredByFullName", T::Str),
    col("registeredDate", T::Date),
    col("contactDeleted", T::Bool),
    col("deletedDate", T::DateTime),
    col("activeErpLinks", T::Bool),
];

impl Contact {
    /// `Name` plus `Department`, as the `nameDepartment` column shows it.
    pub fn name_department(&self) -> String {
        if self.department.is_empty() {
            self.name.to_string()
        } else {
            format!("{} - {}", self.name, self.department)
        }
    }
}

impl Entity for Contact {
    const TYPE: EntityType = EntityType::Contact;
    const TYPED: &'static [&'static str] = &[
        "name",
        "department",
        "orgnr",
        "number1",
        "number2",
        "description",
        "associate",
        "category",
        "business",
        "country",
        "nomailing",
        "xstop",
    ];
    const DERIVED: &'static [&'static str] = &[
        "updateddate",
        "createddate",
        "updatedby",
        "createdby",
        "deleted",
        "persons",
        "activeinterests",
        "groupid",
        "activestatusmonitorid",
        "activeerplinks",
        "bounceemails",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "emails",
        "interests",
        "urls",
        "phones",
        "faxes",
        "address",
        "domains",
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
        Contact {
            id: 0,
            name: "".into(),
            department: "".into(),
            orgnr: "".into(),
            number1: "".into(),
            number2: "".into(),
            description: "".into(),
            associate_id: 0,
            category_id: 0,
            business_id: 0,
            country_id: 0,
            nomailing: false,
            xstop: false,
            audit: Audit::created(Ts::MIN, 0),
            deleted: None,
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        j::put(
            m,
            vec![
                ("ContactId", json!(self.id)),
                ("Name", json!(&*self.name)),
                ("Department", json!(&*self.department)),
                ("OrgNr", json!(&*self.orgnr)),
                ("Number1", json!(&*self.number1)),
                ("Number2", json!(&*self.number2)),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("Emails", json!([])),
                ("Interests", json!([])),
                ("Urls", json!([])),
                ("Phones", json!([])),
                ("Faxes", json!([])),
                ("Description", json!(&*self.description)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("Associate", j::associate(self.associate_id)),
                (
                    "Business",
                    j::list_item(lists::BUSINESSES, self.business_id),
                ),
                ("Category", j::category(self.category_id)),
                ("Country", j::country(self.country_id)),
                ("Persons", json!([])),
                ("NoMailing", json!(self.nomailing)),
                ("Kananame", json!("")),
                ("Xstop", json!(self.xstop)),
                ("ActiveInterests", json!(0)),
                ("GroupId", json!(1)),
                ("ActiveStatusMonitorId", json!(0)),
                ("SupportAssociate", Value::Null),
                ("TicketPriority", Value::Null),
                ("CustomerLanguage", Value::Null),
                ("Deleted", json!(i32::from(self.deleted.is_some()))),
                ("DbiAgentId", json!(0)),
                ("DbiLastSyncronized", cx.ts(Ts::MIN)),
                ("DbiKey", json!("")),
                ("DbiLastModified", cx.ts(Ts::MIN)),
                ("SupportPerson", Value::Null),
                ("Address", j::empty_address()),
                ("Source", json!(0)),
                ("ActiveErpLinks", json!(0)),
                ("BounceEmails", json!([])),
                ("Domains", json!([])),
                ("UtmParameters", Value::Null),
            ],
        );
        j::udf_trio(m, true);
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.name, i.string("name")?);
        take_str(&mut self.department, i.string("department")?);
        take_str(&mut self.orgnr, i.string("orgnr")?);
        take_str(&mut self.number1, i.string("number1")?);
        take_str(&mut self.number2, i.string("number2")?);
        take_str(&mut self.description, i.string("description")?);
        take(
            &mut self.associate_id,
            i.nested_id("associate", &["AssociateId"])?,
        );
        take(&mut self.category_id, i.nested_id("category", &["Id"])?);
        take(&mut self.business_id, i.nested_id("business", &["Id"])?);
        take(
            &mut self.country_id,
            i.nested_id("country", &["CountryId"])?,
        );
        take(&mut self.nomailing, i.bool("nomailing")?);
        take(&mut self.xstop, i.bool("xstop")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("name", json!(&*self.name)),
            ("department", json!(&*self.department)),
            ("orgNr", json!(&*self.orgnr)),
            ("number1", json!(&*self.number1)),
            ("number2", json!(&*self.number2)),
            ("text_id", json!(&*self.description)),
            ("associate_id", json!(self.associate_id)),
            ("category_idx", json!(self.category_id)),
            ("business_idx", json!(self.business_id)),
            ("country_id", json!(self.country_id)),
            ("nomailing", json!(self.nomailing)),
            ("xstop", json!(self.xstop)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("activeInterests", json!(0)),
                ("associate_id", json!(self.associate_id)),
                ("business_idx", json!(self.business_id)),
                ("category_idx", json!(self.category_id)),
                ("country_id", json!(self.country_id)),
                ("deleted", json!(i32::from(self.deleted.is_some()))),
                ("DeletedDate", cx.ts(self.deleted.unwrap_or(Ts::MIN))),
                ("registered", cx.ts(self.audit.created)),
                ("registered_associate_id", json!(self.audit.created_by)),
                ("source", json!(0)),
                ("updated", cx.ts(self.audit.updated)),
                ("userdef2_id", json!(0)),
                ("userdef_id", json!(0)),
            ],
        );
        m
    }

    fn delete_values(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("associate_id".into(), json!(self.associate_id));
        m.insert("contact_id".into(), json!(self.id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "contactId" => Cell::Int(self.id.into()),
            "name" => Cell::Str(Cow::Borrowed(&self.name)),
            "department" => Cell::Str(Cow::Borrowed(&self.department)),
            "nameDepartment" => Cell::Str(Cow::Owned(self.name_department())),
            "orgnr" => Cell::Str(Cow::Borrowed(&self.orgnr)),
            "number" => Cell::Str(Cow::Borrowed(&self.number1)),
            "code" => Cell::Str(Cow::Borrowed(&self.number2)),
            "associateId" => assoc_cell(self.associate_id),
            "category" => item(lists::CATEGORIES, self.category_id),
            "business" => item(lists::BUSINESSES, self.business_id),
            "country" => Cell::Item(
                self.country_id.into(),
                Cow::Borrowed(
                    lists::country(self.country_id)
                        .map(|c| c.name)
                        .unwrap_or(""),
                ),
            ),
            "countryId" => Cell::Int(self.country_id.into()),
            "stop" => Cell::Bool(self.xstop),
            "contactNoMail" => Cell::Bool(self.nomailing),
            "hasInfoText" => Cell::Bool(!self.description.is_empty()),
            "updatedBy" => assoc_cell(a.updated_by),
            "updatedByFullName" => assoc_full(a.updated_by),
            "updatedDate" => Cell::Time(a.updated),
            "registeredBy" => assoc_cell(a.created_by),
            "registeredByFullName" => assoc_full(a.created_by),
            "registeredDate" => Cell::Time(a.created),
            "contactDeleted" => Cell::Bool(self.deleted.is_some()),
            "deletedDate" => Cell::Time(self.deleted.unwrap_or(Ts::MIN)),
            "activeErpLinks" => Cell::Bool(false),
            _ => Cell::Null,
        }
    }

    fn seed(g: &mut Gen<'_>) -> Self {
        let audit = g.audit();
        let rng = &mut *g.rng;
        let name = format!(
            "{} {} {}",
            COMPANY_WORDS[rng.gen_range(0..COMPANY_WORDS.len())],
            COMPANY_TRADES[rng.gen_range(0..COMPANY_TRADES.len())],
            COMPANY_FORMS[rng.gen_range(0..COMPANY_FORMS.len())],
        );
        let mut c = Contact::blank();
        c.name = name.into();
        c.department = word(rng, DEPARTMENTS);
        c.orgnr = format!("{:09}", rng.gen_range(100_000_000u32..999_999_999)).into();
        c.number1 = format!("{}", rng.gen_range(10_000..99_999)).into();
        c.associate_id = rng.gen_range(lists::OTHER_USERS);
        c.category_id = g.item(lists::CATEGORIES);
        c.business_id = g.item(lists::BUSINESSES);
        c.country_id = g.pick(lists::COUNTRIES).id;
        c.nomailing = g.rng.gen_range(0..10) == 0;
        c.audit = audit;
        c
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..5) {
            0 => {
                self.department = word(rng, &DEPARTMENTS[3..]);
            }
            1 => self.category_id = lists::CATEGORIES[rng.gen_range(0..lists::CATEGORIES.len())].id,
            2 => self.associate_id = rng.gen_range(lists::OTHER_USERS),
            3 => self.number1 = format!("{}", rng.gen_range(10_000..99_999)).into(),
            _ => {
                let trade = COMPANY_TRADES[rng.gen_range(0..COMPANY_TRADES.len())];
                let first = self.name.split(' ').next().unwrap_or("New").to_string();
                self.name = format!("{first} {trade} AS").into();
            }
        }
    }
}

/// An associate cell (id plus login name).
pub fn assoc_cell(id: i32) -> Cell<'static> {
    Cell::Item(
        id.into(),
        Cow::Borrowed(lists::associate(id).map(|a| a.name).unwrap_or("")),
    )
}

/// An associate's full name as a text cell.
pub fn assoc_full(id: i32) -> Cell<'static> {
    Cell::Str(Cow::Owned(
        lists::associate(id)
            .map(|a| a.full_name())
            .unwrap_or_default(),
    ))
}

/// A list-item cell.
pub fn item(list: &'static [lists::Item], id: i32) -> Cell<'static> {
    Cell::Item(id.into(), Cow::Borrowed(lists::label(list, id)))
}
