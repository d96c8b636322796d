//! Document: `DocumentEntity`, archive `FindDocument`, webhook entity `document` (and
//! `activity`, see [`crate::config::WebhookConfig::documents_fire_activity_events`]).
//! Hard-deleted. Only metadata is modelled; there is no document content.

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

/// A document.
#[derive(Debug, Clone)]
pub struct Document {
    /// `DocumentId`.
    pub id: i32,
    /// `Header` (archive column `subject`).
    pub header: Box<str>,
    /// `Name` (file name).
    pub name: Box<str>,
    /// `OurRef`.
    pub our_ref: Box<str>,
    /// `YourRef`.
    pub your_ref: Box<str>,
    /// `Attention`.
    pub attention: Box<str>,
    /// `Description`.
    pub description: Box<str>,
    /// `Contact`.
    pub contact_id: i32,
    /// `Person`.
    pub person_id: i32,
    /// `Project`.
    pub project_id: i32,
    /// `Sale`.
    pub sale_id: i32,
    /// `Associate` (owner).
    pub associate_id: i32,
    /// `DocumentTemplate`.
    pub template_id: i32,
    /// `Snum` (document number).
    pub snum: i32,
    /// `Completed` (1 NotStarted, 2 Started, 3 Completed).
    pub completed: u8,
    /// `Date`.
    pub date: Ts,
    /// Audit fields.
    pub audit: Audit,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("documentId", T::Int),
    col("date", T::Date),
    col("subject", T::Str),
    col("name", T::Str),
    col("ourref", T::Str),
    col("yourref", T::Str),
    col("attention", T::Str),
    col("text", T::Str),
    col("type", T::List),
    col("associateId", T::Assoc),
    col("contactId", T::Int),
    col("personId", T::Int),
    col("projectId", T::Int),
    col("saleId", T::Int),
    col("completed", T::Bool),
    col("snum", T::Int),
    col("updatedBy", T::Assoc),
    col("updatedByFullName", T::Str),
    col("updatedDate", T::Date),
    col("registeredBy", T::Assoc),
    col("registeredByFullName", T::Str),
    col("registeredDate", T::Date),
];

impl Entity for Document {
    const TYPE: EntityType = EntityType::Document;
    const TYPED: &'static [&'static str] = &[
        "header",
        "name",
        "ourref",
        "yourref",
        "attention",
        "description",
        "contact",
        "person",
        "project",
        "sale",
        "associate",
        "documenttemplate",
        "snum",
        "completed",
        "date",
    ];
    const DERIVED: &'static [&'static str] = &[
        "updateddate",
        "createddate",
        "updatedby",
        "createdby",
        "activelinks",
        "type",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "links",
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
        Document {
            id: 0,
            header: "".into(),
            name: "".into(),
            our_ref: "".into(),
            your_ref: "".into(),
            attention: "".into(),
            description: "".into(),
            contact_id: 0,
            person_id: 0,
            project_id: 0,
            sale_id: 0,
            associate_id: 0,
            template_id: 0,
            snum: 0,
            completed: 1,
            date: Ts::MIN,
            audit: Audit::created(Ts::MIN, 0),
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        let template = if self.template_id == 0 {
            Value::Null
        } else {
            json!({
                "DocumentTemplateId": self.template_id,
                "Name": lists::label(lists::DOCUMENT_TEMPLATES, self.template_id),
                "Tooltip": "",
                "SaveInDb": 1,
                "Filename": "",
                "DefaultOref": "",
                "RecordType": "Document",
                "Deleted": 0,
                "Direction": "Outgoing",
                "AutoeventId": 0,
                "QuoteDocType": "None",
                "TableRight": null,
                "FieldProperties": {},
            })
        };
        j::put(
            m,
            vec![
                ("DocumentId", json!(self.id)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("Attention", json!(&*self.attention)),
                ("Header", json!(&*self.header)),
                ("Name", json!(&*self.name)),
                ("OurRef", json!(&*self.our_ref)),
                ("YourRef", json!(&*self.your_ref)),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                ("Description", json!(&*self.description)),
                ("DocumentTemplate", template),
                ("Person", j::person_summary(cx, self.person_id)),
                ("Associate", j::associate(self.associate_id)),
                ("Contact", j::contact_summary(cx, self.contact_id)),
                ("Project", j::project_summary(cx, self.project_id)),
                ("Date", cx.ts(self.date)),
                ("ExternalRef", json!("")),
                (
                    "Completed",
                    json!(lists::label(lists::COMPLETED, self.completed.into())),
                ),
                ("ActiveLinks", json!(0)),
                ("Type", json!("Document")),
                ("Links", json!([])),
                ("LockSemantics", json!("None")),
                ("Sale", j::sale_summary(cx, self.sale_id)),
                ("SuggestedDocumentId", json!(0)),
                ("Snum", json!(self.snum)),
            ],
        );
        j::udf_trio(m, true);
        j::publish(m, cx);
        m.insert("VisibleFor".into(), json!([]));
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.header, i.string("header")?);
        take_str(&mut self.name, i.string("name")?);
        take_str(&mut self.our_ref, i.string("ourref")?);
        take_str(&mut self.your_ref, i.string("yourref")?);
        take_str(&mut self.attention, i.string("attention")?);
        take_str(&mut self.description, i.string("description")?);
        take(
            &mut self.contact_id,
            i.nested_id("contact", &["ContactId"])?,
        );
        take(&mut self.person_id, i.nested_id("person", &["PersonId"])?);
        take(
            &mut self.project_id,
            i.nested_id("project", &["ProjectId"])?,
        );
        take(&mut self.sale_id, i.nested_id("sale", &["SaleId"])?);
        take(
            &mut self.associate_id,
            i.nested_id("associate", &["AssociateId"])?,
        );
        take(
            &mut self.template_id,
            i.nested_id("documenttemplate", &["DocumentTemplateId"])?,
        );
        take(&mut self.snum, i.int("snum")?);
        if let Some(c) = i.enum_id("completed", lists::COMPLETED)? {
            self.completed = c.clamp(0, 3) as u8;
        }
        take(&mut self.date, i.ts("date")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("header", json!(&*self.header)),
            ("name", json!(&*self.name)),
            ("oref", json!(&*self.our_ref)),
            ("yref", json!(&*self.your_ref)),
            ("attention", json!(&*self.attention)),
            ("text_id", json!(&*self.description)),
            ("contact_id", json!(self.contact_id)),
            ("person_id", json!(self.person_id)),
            ("project_id", json!(self.project_id)),
            ("sale_id", json!(self.sale_id)),
            ("associate_id", json!(self.associate_id)),
            ("doctmpl_id", json!(self.template_id)),
            ("snum", json!(self.snum)),
            ("status", json!(self.completed)),
            ("do_by", json!(self.date.0)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("document_id", json!(self.id)),
                ("associate_id", json!(self.associate_id)),
                ("contact_id", json!(self.contact_id)),
                ("person_id", json!(self.person_id)),
                ("project_id", json!(self.project_id)),
                ("sale_id", json!(self.sale_id)),
                ("doctmpl_id", json!(self.template_id)),
                ("registered", cx.ts(self.audit.created)),
                ("registered_associate_id", json!(self.audit.created_by)),
                ("updated", cx.ts(self.audit.updated)),
                ("updated_associate_id", json!(self.audit.updated_by)),
            ],
        );
        m
    }

    fn delete_values(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("associate_id".into(), json!(self.associate_id));
        m.insert("contact_id".into(), json!(self.contact_id));
        m.insert("document_id".into(), json!(self.id));
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
            "documentId" => Cell::Int(self.id.into()),
            "date" => Cell::Time(self.date),
            "subject" => Cell::Str(Cow::Borrowed(&self.header)),
            "name" => Cell::Str(Cow::Borrowed(&self.name)),
            "ourref" => Cell::Str(Cow::Borrowed(&self.our_ref)),
            "yourref" => Cell::Str(Cow::Borrowed(&self.your_ref)),
            "attention" => Cell::Str(Cow::Borrowed(&self.attention)),
            "text" => Cell::Str(Cow::Borrowed(&self.header)),
            "type" => item(lists::DOCUMENT_TEMPLATES, self.template_id),
            "associateId" => assoc_cell(self.associate_id),
            "contactId" => Cell::Int(self.contact_id.into()),
            "personId" => Cell::Int(self.person_id.into()),
            "projectId" => Cell::Int(self.project_id.into()),
            "saleId" => Cell::Int(self.sale_id.into()),
            "completed" => Cell::Bool(self.completed == 3),
            "snum" => Cell::Int(self.snum.into()),
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
        let mut d = Document::blank();
        d.contact_id = Refs::pick(g.rng, g.refs.contacts, 10);
        d.person_id = Refs::pick(g.rng, g.refs.persons, 40);
        d.project_id = Refs::pick(g.rng, g.refs.projects, 80);
        d.sale_id = Refs::pick(g.rng, g.refs.sales, 80);
        d.template_id = g.item(lists::DOCUMENT_TEMPLATES);
        let subject = g.pick(SUBJECTS);
        d.header = format!(
            "{} {}",
            lists::label(lists::DOCUMENT_TEMPLATES, d.template_id),
            subject
        )
        .into();
        d.snum = g.rng.gen_range(1..100_000);
        d.name = format!("doc{}_{}.docx", d.snum, subject.to_ascii_lowercase()).into();
        d.our_ref = lists::associate(g.other_user())
            .map(|a| a.name)
            .unwrap_or("")
            .into();
        d.associate_id = g.other_user();
        d.date = g.after(audit.created, 30);
        d.completed = 3;
        d.audit = audit;
        d
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..3) {
            0 => {
                self.header = format!(
                    "{} (rev {})",
                    self.header.split(" (rev").next().unwrap_or(""),
                    rng.gen_range(2..9)
                )
                .into()
            }
            1 => self.your_ref = format!("REF-{}", rng.gen_range(100..999)).into(),
            _ => self.associate_id = rng.gen_range(lists::OTHER_USERS),
        }
    }
}
