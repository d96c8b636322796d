//! Appointment (follow-up): `AppointmentEntity`, archive `FindAppointment`, webhook entity
//! `activity`. Hard-deleted.

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

/// An appointment.
#[derive(Debug, Clone)]
pub struct Appointment {
    /// `AppointmentId`.
    pub id: i32,
    /// `Title`.
    pub title: Box<str>,
    /// `Description`.
    pub description: Box<str>,
    /// `Location`.
    pub location: Box<str>,
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
    /// `Priority`.
    pub priority_id: i32,
    /// `Task` (follow-up type).
    pub task_id: i32,
    /// `Type` (1 inDiary, 2 inChecklist, …).
    pub kind: u8,
    /// `Completed` (1 NotStarted, 2 Started, 3 Completed).
    pub completed: u8,
    /// `StartDate`.
    pub start: Ts,
    /// `EndDate`.
    pub end: Ts,
    /// Audit fields.
    pub audit: Audit,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("appointmentId", T::Int),
    col("date", T::Date),
    col("endDate", T::Date),
    col("text", T::Str),
    col("type", T::List),
    col("rawType", T::Int),
    col("associateId", T::Assoc),
    col("contactId", T::Int),
    col("personId", T::Int),
    col("projectId", T::Int),
    col("saleId", T::Int),
    col("completed", T::Bool),
    col("priority", T::List),
    col("location", T::Str),
    col("updatedBy", T::Assoc),
    col("updatedByFullName", T::Str),
    col("updatedDate", T::Date),
    col("registeredBy", T::Assoc),
    col("registeredByFullName", T::Str),
    col("registeredDate", T::Date),
];

impl Entity for Appointment {
    const TYPE: EntityType = EntityType::Appointment;
    const TYPED: &'static [&'static str] = &[
        "title",
        "description",
        "location",
        "contact",
        "person",
        "project",
        "sale",
        "associate",
        "priority",
        "task",
        "type",
        "completed",
        "startdate",
        "enddate",
    ];
    const DERIVED: &'static [&'static str] = &[
        "updateddate",
        "createddate",
        "updatedby",
        "createdby",
        "activelinks",
        "activedate",
        "motherassociate",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "links",
        "participants",
        "recurrence",
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
        Appointment {
            id: 0,
            title: "".into(),
            description: "".into(),
            location: "".into(),
            contact_id: 0,
            person_id: 0,
            project_id: 0,
            sale_id: 0,
            associate_id: 0,
            priority_id: 0,
            task_id: 0,
            kind: 1,
            completed: 1,
            start: Ts::MIN,
            end: Ts::MIN,
            audit: Audit::created(Ts::MIN, 0),
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        let task = if self.task_id == 0 {
            Value::Null
        } else {
            json!({
                "TaskListItemId": self.task_id,
                "Value": lists::label(lists::TASKS, self.task_id),
                "Direction": "Unknown",
                "Type": "Appointment",
                "Tooltip": "",
                "Deleted": false,
                "IntentId": 0,
                "Rank": self.task_id,
                "IsDefaultAlldayEvent": false,
                "IsDefaultFree": false,
                "IsDefaultPublished": false,
                "ColorIndex": "LightBlue",
                "DefaultVideomeetingStatus": "NoChange",
                "TableRight": null,
                "FieldProperties": {},
            })
        };
        j::put(
            m,
            vec![
                ("Associate", j::associate(self.associate_id)),
                ("Contact", j::contact_summary(cx, self.contact_id)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("AppointmentId", json!(self.id)),
                ("Description", json!(&*self.description)),
                ("Title", json!(&*self.title)),
                ("Agenda", json!("")),
                ("InternalNotes", json!("")),
                ("StartDate", cx.ts(self.start)),
                ("EndDate", cx.ts(self.end)),
                ("InvitedPerson", Value::Null),
                ("Person", j::person_summary(cx, self.person_id)),
                ("MotherId", json!(0)),
                (
                    "Priority",
                    j::list_item(lists::PRIORITIES, self.priority_id),
                ),
                ("Private", json!("Public")),
                ("Project", j::project_summary(cx, self.project_id)),
                (
                    "Type",
                    json!(lists::label(lists::APPOINTMENT_TYPES, self.kind.into())),
                ),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                (
                    "Completed",
                    json!(lists::label(lists::COMPLETED, self.completed.into())),
                ),
                ("ActiveLinks", json!(0)),
                ("Links", json!([])),
                ("AlarmLeadTime", json!("00:00:00")),
                ("HasAlarm", json!(false)),
                ("ColorIndex", json!(0)),
                ("IsFree", json!(false)),
                ("IsAlldayEvent", json!(false)),
                ("LagTime", json!("00:00:00")),
                ("LeadTime", json!("00:00:00")),
                ("Location", json!(&*self.location)),
                ("RejectCounter", json!(0)),
                ("RejectReason", json!("")),
                ("Recurrence", Value::Null),
                ("Participants", json!([])),
                ("AssignmentStatus", json!("None")),
                ("InvitationStatus", json!("None")),
                ("BookingType", json!("None")),
                ("ActiveDate", cx.ts(self.start.start_of_day())),
                ("HasConflict", json!(false)),
                ("AssignedBy", Value::Null),
                ("MotherAssociate", j::associate(self.associate_id)),
                ("Task", task),
                ("PreferredTZLocation", json!(0)),
                ("PreferredTZLocationData", Value::Null),
                ("Sale", j::sale_summary(cx, self.sale_id)),
                ("SuggestedAppointmentId", json!(0)),
                ("IsMileStone", json!(false)),
                ("CautionWarning", json!("OK")),
                ("OwnedExternally", json!("None")),
                ("JoinVideomeetUrl", json!("")),
                ("CentralserviceVideomeetId", json!("")),
            ],
        );
        j::udf_trio(m, true);
        j::publish(m, cx);
        m.insert("VisibleFor".into(), json!([]));
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.title, i.string("title")?);
        take_str(&mut self.description, i.string("description")?);
        take_str(&mut self.location, i.string("location")?);
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
        take(&mut self.priority_id, i.nested_id("priority", &["Id"])?);
        take(&mut self.task_id, i.nested_id("task", &["TaskListItemId"])?);
        if let Some(k) = i.enum_id("type", lists::APPOINTMENT_TYPES)? {
            self.kind = k.clamp(0, 9) as u8;
        }
        if let Some(c) = i.enum_id("completed", lists::COMPLETED)? {
            self.completed = c.clamp(0, 3) as u8;
        }
        take(&mut self.start, i.ts("startdate")?);
        take(&mut self.end, i.ts("enddate")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("title", json!(&*self.title)),
            ("text_id", json!(&*self.description)),
            ("location", json!(&*self.location)),
            ("contact_id", json!(self.contact_id)),
            ("person_id", json!(self.person_id)),
            ("project_id", json!(self.project_id)),
            ("sale_id", json!(self.sale_id)),
            ("associate_id", json!(self.associate_id)),
            ("priority_id", json!(self.priority_id)),
            ("task_idx", json!(self.task_id)),
            ("type", json!(self.kind)),
            ("status", json!(self.completed)),
            ("do_by", json!(self.start.0)),
            ("endDate", json!(self.end.0)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("appointment_id", json!(self.id)),
                ("associate_id", json!(self.associate_id)),
                ("contact_id", json!(self.contact_id)),
                ("person_id", json!(self.person_id)),
                ("project_id", json!(self.project_id)),
                ("sale_id", json!(self.sale_id)),
                ("priority_id", json!(self.priority_id)),
                ("task_idx", json!(self.task_id)),
                ("type", json!(self.kind)),
                ("status", json!(self.completed)),
                ("do_by", cx.ts(self.start)),
                ("endDate", cx.ts(self.end)),
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
        m.insert("appointment_id".into(), json!(self.id));
        m.insert("associate_id".into(), json!(self.associate_id));
        m.insert("contact_id".into(), json!(self.contact_id));
        m.insert("person_id".into(), json!(self.person_id));
        m.insert("project_id".into(), json!(self.project_id));
        m.insert("sale_id".into(), json!(self.sale_id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "appointmentId" => Cell::Int(self.id.into()),
            "date" => Cell::Time(self.start),
            "endDate" => Cell::Time(self.end),
            "text" => Cell::Str(Cow::Borrowed(if self.title.is_empty() {
                &self.description
            } else {
                &self.title
            })),
            "type" => item(lists::TASKS, self.task_id),
            "rawType" => Cell::Int(self.kind.into()),
            "associateId" => assoc_cell(self.associate_id),
            "contactId" => Cell::Int(self.contact_id.into()),
            "personId" => Cell::Int(self.person_id.into()),
            "projectId" => Cell::Int(self.project_id.into()),
            "saleId" => Cell::Int(self.sale_id.into()),
            "completed" => Cell::Bool(self.completed == 3),
            "priority" => item(lists::PRIORITIES, self.priority_id),
            "location" => Cell::Str(Cow::Borrowed(&self.location)),
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
        let mut a = Appointment::blank();
        a.contact_id = Refs::pick(g.rng, g.refs.contacts, 10);
        a.person_id = Refs::pick(g.rng, g.refs.persons, 40);
        a.project_id = Refs::pick(g.rng, g.refs.projects, 80);
        a.sale_id = Refs::pick(g.rng, g.refs.sales, 80);
        a.title = format!("{} with customer", g.pick(SUBJECTS)).into();
        a.location = g.pick(&["", "Office", "Teams", "Customer site"]).into();
        a.associate_id = g.other_user();
        a.priority_id = g.item(lists::PRIORITIES);
        a.task_id = g.item(lists::TASKS);
        a.kind = if g.rng.gen_range(0..4) == 0 { 2 } else { 1 };
        a.start = g.after(audit.created, 60);
        a.end = a.start.plus(3600);
        a.completed = if a.start < g.anchor { 3 } else { 1 };
        a.audit = audit;
        a
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..3) {
            0 => {
                let shift = rng.gen_range(1..72) * 3600;
                self.start = self.start.plus(shift);
                self.end = self.end.plus(shift);
            }
            1 => self.completed = if self.completed == 3 { 1 } else { 3 },
            _ => {
                self.location =
                    ["Office", "Teams", "Customer site", "Cafe"][rng.gen_range(0..4)].into()
            }
        }
    }
}
