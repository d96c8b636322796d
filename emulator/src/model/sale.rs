//! Sale: `SaleEntity`, archive `FindSale`, webhook entity `sale` (plus `sale.sold`,
//! `sale.lost` and `sale.completed` when status or completion change). Hard-deleted.

use std::borrow::Cow;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::contact::{assoc_cell, assoc_full, item};
use super::lists::{self, SUBJECTS};
use super::{
    Audit, Cell, ColType as T, Column, Cx, Entity, EntityType, Gen, Input, Refs, col,
    json_parts as j, take, take_str,
};
use crate::clock::Ts;
use crate::error::SoError;

/// Sale status `Sold`.
pub const STATUS_SOLD: u8 = 2;
/// Sale status `Lost`.
pub const STATUS_LOST: u8 = 3;
/// Completion value `Completed`.
pub const COMPLETED: u8 = 3;

/// A sale.
#[derive(Debug, Clone)]
pub struct Sale {
    /// `SaleId`.
    pub id: i32,
    /// `Heading`.
    pub heading: Box<str>,
    /// `Number`.
    pub number: Box<str>,
    /// `SaleText` / description.
    pub description: Box<str>,
    /// `Contact`.
    pub contact_id: i32,
    /// `Person`.
    pub person_id: i32,
    /// `Project`.
    pub project_id: i32,
    /// `Associate` (owner).
    pub associate_id: i32,
    /// `Currency`.
    pub currency_id: i32,
    /// `SaleType`.
    pub sale_type_id: i32,
    /// `Source`.
    pub source_id: i32,
    /// `Amount`.
    pub amount: f64,
    /// `Earning`.
    pub earning: f64,
    /// `Probability` (percent).
    pub probability: i32,
    /// `Status` (1 Open, 2 Sold, 3 Lost, 4 Stalled).
    pub status: u8,
    /// `Completed` (1 NotStarted, 2 Started, 3 Completed).
    pub completed: u8,
    /// `Saledate`.
    pub saledate: Ts,
    /// `NextDueDate`.
    pub next_due: Ts,
    /// Audit fields.
    pub audit: Audit,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

impl Sale {
    /// `EarningPercent`.
    pub fn earning_percent(&self) -> f64 {
        if self.amount == 0.0 {
            0.0
        } else {
            (self.earning / self.amount * 10_000.0).round() / 100.0
        }
    }
}

static COLUMNS: &[Column] = &[
    col("saleId", T::Int),
    col("heading", T::Str),
    col("saleNumber", T::Str),
    col("description", T::Str),
    col("contactId", T::Int),
    col("personId", T::Int),
    col("projectId", T::Int),
    col("associateId", T::Assoc),
    col("date", T::Date),
    col("amount", T::Dec),
    col("amountWeighted", T::Dec),
    col("earning", T::Dec),
    col("earningPercent", T::Dec),
    col("probPercent", T::Int),
    col("saleStatus", T::List),
    col("completed", T::Bool),
    col("currency", T::List),
    col("currencyId", T::Int),
    col("saleType", T::List),
    col("source", T::List),
    col("nextDueDate", T::Date),
    col("updatedBy", T::Assoc),
    col("updatedByFullName", T::Str),
    col("updatedDate", T::Date),
    col("registeredBy", T::Assoc),
    col("registeredByFullName", T::Str),
    col("registeredDate", T::Date),
];

impl Entity for Sale {
    const TYPE: EntityType = EntityType::Sale;
    const TYPED: &'static [&'static str] = &[
        "heading",
        "number",
        "saletext",
        "contact",
        "person",
        "project",
        "associate",
        "currency",
        "saletype",
        "source",
        "amount",
        "earning",
        "probability",
        "status",
        "completed",
        "saledate",
        "nextduedate",
    ];
    const DERIVED: &'static [&'static str] = &[
        "updateddate",
        "createddate",
        "updatedby",
        "createdby",
        "earningpercent",
        "activelinks",
        "activeerplinks",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "links",
        "salestakeholders",
        "userdefinedfields",
        "extrafields",
        "customfields",
        "visiblefor",
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

    fn blank() -> Self {
        Sale {
            id: 0,
            heading: "".into(),
            number: "".into(),
            description: "".into(),
            contact_id: 0,
            person_id: 0,
            project_id: 0,
            associate_id: 0,
            currency_id: 0,
            sale_type_id: 0,
            source_id: 0,
            amount: 0.0,
            earning: 0.0,
            probability: 0,
            status: 1,
            completed: 1,
            saledate: Ts::MIN,
            next_due: Ts::MIN,
            audit: Audit::created(Ts::MIN, 0),
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        j::put(
            m,
            vec![
                ("Appointment", Value::Null),
                ("Associate", j::associate(self.associate_id)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("Contact", j::contact_summary(cx, self.contact_id)),
                ("Project", j::project_summary(cx, self.project_id)),
                ("SaleText", json!(&*self.description)),
                ("Person", j::person_summary(cx, self.person_id)),
                (
                    "Currency",
                    j::list_item(lists::CURRENCIES, self.currency_id),
                ),
                ("Competitor", Value::Null),
                ("Credited", Value::Null),
                ("Rating", Value::Null),
                ("Reason", Value::Null),
                ("Source", j::list_item(lists::SOURCES, self.source_id)),
                (
                    "Status",
                    json!(lists::label(lists::SALE_STATUSES, self.status.into())),
                ),
                ("Saledate", cx.ts(self.saledate)),
                ("Amount", json!(self.amount)),
                ("SaleId", json!(self.id)),
                ("Earning", json!(self.earning)),
                ("EarningPercent", json!(self.earning_percent())),
                ("Heading", json!(&*self.heading)),
                ("Number", json!(&*self.number)),
                ("Probability", json!(self.probability)),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                (
                    "Completed",
                    json!(lists::label(lists::COMPLETED, self.completed.into())),
                ),
                ("ActiveLinks", json!(0)),
                ("Links", json!([])),
                ("NextDueDate", cx.ts(self.next_due)),
                ("Postit", json!("")),
                (
                    "SaleType",
                    j::list_item(lists::SALE_TYPES, self.sale_type_id),
                ),
                ("ReasonSold", Value::Null),
                ("ReasonStalled", Value::Null),
                ("ReopenDate", cx.ts(Ts::MIN)),
                ("SaleStakeholders", json!([])),
                ("ActiveErpLinks", json!(0)),
            ],
        );
        j::udf_trio(m, true);
        j::publish(m, cx);
        m.insert("VisibleFor".into(), json!([]));
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.heading, i.string("heading")?);
        take_str(&mut self.number, i.string("number")?);
        take_str(&mut self.description, i.string("saletext")?);
        take(
            &mut self.contact_id,
            i.nested_id("contact", &["ContactId"])?,
        );
        take(&mut self.person_id, i.nested_id("person", &["PersonId"])?);
        take(
            &mut self.project_id,
            i.nested_id("project", &["ProjectId"])?,
        );
        take(
            &mut self.associate_id,
            i.nested_id("associate", &["AssociateId"])?,
        );
        take(&mut self.currency_id, i.nested_id("currency", &["Id"])?);
        take(&mut self.sale_type_id, i.nested_id("saletype", &["Id"])?);
        take(&mut self.source_id, i.nested_id("source", &["Id"])?);
        take(&mut self.amount, i.float("amount")?);
        take(&mut self.earning, i.float("earning")?);
        take(&mut self.probability, i.int("probability")?);
        if let Some(s) = i.enum_id("status", lists::SALE_STATUSES)? {
            self.status = s.clamp(0, 5) as u8;
        }
        if let Some(c) = i.enum_id("completed", lists::COMPLETED)? {
            self.completed = c.clamp(0, 3) as u8;
        }
        take(&mut self.saledate, i.ts("saledate")?);
        take(&mut self.next_due, i.ts("nextduedate")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("heading", json!(&*self.heading)),
            ("number1", json!(&*self.number)),
            ("text_id", json!(&*self.description)),
            ("contact_id", json!(self.contact_id)),
            ("person_id", json!(self.person_id)),
            ("project_id", json!(self.project_id)),
            ("associate_id", json!(self.associate_id)),
            ("currency_id", json!(self.currency_id)),
            ("saleType_id", json!(self.sale_type_id)),
            ("source_id", json!(self.source_id)),
            ("amount", json!(self.amount)),
            ("earning", json!(self.earning)),
            ("probability", json!(self.probability)),
            ("status", json!(self.status)),
            ("done", json!(self.completed)),
            ("saledate", json!(self.saledate.0)),
            ("nextDueDate", json!(self.next_due.0)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("activeLinks", json!(0)),
                ("appointment_id", json!(0)),
                ("associate_id", json!(self.associate_id)),
                ("comptr_id", json!(0)),
                ("contact_id", json!(self.contact_id)),
                ("credited_id", json!(0)),
                ("currency_id", json!(self.currency_id)),
                ("done", json!(i32::from(self.completed == COMPLETED))),
                ("group_idx", json!(1)),
                ("person_id", json!(self.person_id)),
                ("probability_idx", json!(0)),
                ("project_id", json!(self.project_id)),
                ("reason_id", json!(0)),
                ("reasonSold_id", json!(0)),
                ("reasonStalled_id", json!(0)),
                ("registered", cx.ts(self.audit.created)),
                ("registered_associate_id", json!(self.audit.created_by)),
                ("saleTypeCat_id", json!(0)),
                ("saleType_id", json!(self.sale_type_id)),
                ("saledate", cx.ts(self.saledate)),
                ("source_id", json!(self.source_id)),
                ("status", json!(self.status)),
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
        m.insert("person_id".into(), json!(self.person_id));
        m.insert("project_id".into(), json!(self.project_id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "saleId" => Cell::Int(self.id.into()),
            "heading" => Cell::Str(Cow::Borrowed(&self.heading)),
            "saleNumber" => Cell::Str(Cow::Borrowed(&self.number)),
            "description" => Cell::Str(Cow::Borrowed(&self.description)),
            "contactId" => Cell::Int(self.contact_id.into()),
            "personId" => Cell::Int(self.person_id.into()),
            "projectId" => Cell::Int(self.project_id.into()),
            "associateId" => assoc_cell(self.associate_id),
            "date" => Cell::Time(self.saledate),
            "amount" => Cell::Dec(self.amount),
            "amountWeighted" => Cell::Dec(self.amount * f64::from(self.probability) / 100.0),
            "earning" => Cell::Dec(self.earning),
            "earningPercent" => Cell::Dec(self.earning_percent()),
            "probPercent" => Cell::Int(self.probability.into()),
            "saleStatus" => item(lists::SALE_STATUSES, self.status.into()),
            "completed" => Cell::Bool(self.completed == COMPLETED),
            "currency" => item(lists::CURRENCIES, self.currency_id),
            "currencyId" => Cell::Int(self.currency_id.into()),
            "saleType" => item(lists::SALE_TYPES, self.sale_type_id),
            "source" => item(lists::SOURCES, self.source_id),
            "nextDueDate" => Cell::Time(self.next_due),
            "updatedBy" => assoc_cell(a.updated_by),
            "updatedByFullName" => assoc_full(a.updated_by),
            "updatedDate" => Cell::Time(a.updated),
            "registeredBy" => assoc_cell(a.created_by),
            "registeredByFullName" => assoc_full(a.created_by),
            "registeredDate" => Cell::Time(a.created),
            _ => Cell::Null,
        }
    }

    fn seed(g: &mut Gen<'_>) -> Self {
        let audit = g.audit();
        let mut s = Sale::blank();
        s.contact_id = Refs::pick(g.rng, g.refs.contacts, 5);
        s.person_id = Refs::pick(g.rng, g.refs.persons, 30);
        s.project_id = Refs::pick(g.rng, g.refs.projects, 70);
        s.heading = format!("{} {}", g.pick(SUBJECTS), g.rng.gen_range(100..999)).into();
        s.number = format!("S-{}", g.rng.gen_range(10_000..99_999)).into();
        s.associate_id = g.other_user();
        s.currency_id = g.item(lists::CURRENCIES);
        s.sale_type_id = g.item(lists::SALE_TYPES);
        s.source_id = g.item(lists::SOURCES);
        s.amount = f64::from(g.rng.gen_range(1..500)) * 1000.0;
        s.earning = (s.amount * f64::from(g.rng.gen_range(5..60)) / 100.0).round();
        s.probability = g.rng.gen_range(1..10) * 10;
        s.status = g.rng.gen_range(1..=4);
        s.completed = if s.status == 1 { 1 } else { COMPLETED };
        s.saledate = g.after(audit.created, 180).start_of_day();
        s.audit = audit;
        s
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..4) {
            0 => self.amount = f64::from(rng.gen_range(1..500)) * 1000.0,
            1 => self.probability = rng.gen_range(1..10) * 10,
            2 => {
                self.status = rng.gen_range(1..=4);
                self.completed = if self.status == 1 { 1 } else { COMPLETED };
            }
            _ => {
                self.heading = format!(
                    "{} {}",
                    SUBJECTS[rng.gen_range(0..SUBJECTS.len())],
                    rng.gen_range(100..999)
                )
                .into()
            }
        }
    }
}
