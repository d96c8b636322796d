//! Project: `ProjectEntity`, archive `FindProject`, webhook entity `project`. Hard-deleted.

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

/// A project.
#[derive(Debug, Clone)]
pub struct Project {
    /// `ProjectId`.
    pub id: i32,
    /// `Name`.
    pub name: Box<str>,
    /// `ProjectNumber`.
    pub project_number: Box<str>,
    /// `Description`.
    pub description: Box<str>,
    /// `Associate` (owner).
    pub associate_id: i32,
    /// `ProjectStatus`.
    pub status_id: i32,
    /// `ProjectType`.
    pub type_id: i32,
    /// `Completed`.
    pub completed: bool,
    /// `StartDate`.
    pub start_date: Ts,
    /// `EndDate`.
    pub end_date: Ts,
    /// Audit fields.
    pub audit: Audit,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("projectId", T::Int),
    col("name", T::Str),
    col("number", T::Str),
    col("type", T::List),
    col("status", T::List),
    col("associateId", T::Assoc),
    col("completed", T::Bool),
    col("hasInfoText", T::Bool),
    col("description", T::Str),
    col("endDate", T::Date),
    col("updatedBy", T::Assoc),
    col("updatedByFullName", T::Str),
    col("updatedDate", T::Date),
    col("registeredBy", T::Assoc),
    col("registeredByFullName", T::Str),
    col("registeredDate", T::Date),
];

impl Entity for Project {
    const TYPE: EntityType = EntityType::Project;
    const TYPED: &'static [&'static str] = &[
        "name",
        "projectnumber",
        "description",
        "associate",
        "projectstatus",
        "projecttype",
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
        "activeerplinks",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "projectmembers",
        "urls",
        "links",
        "userdefinedfields",
        "extrafields",
        "customfields",
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
        Project {
            id: 0,
            name: "".into(),
            project_number: "".into(),
            description: "".into(),
            associate_id: 0,
            status_id: 0,
            type_id: 0,
            completed: false,
            start_date: Ts::MIN,
            end_date: Ts::MIN,
            audit: Audit::created(Ts::MIN, 0),
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        j::put(
            m,
            vec![
                ("ProjectId", json!(self.id)),
                ("Name", json!(&*self.name)),
                ("ProjectNumber", json!(&*self.project_number)),
                ("ProjectMembers", json!([])),
                ("Urls", json!([])),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                ("Description", json!(&*self.description)),
                ("Postit", json!("")),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                ("Associate", j::associate(self.associate_id)),
                (
                    "ProjectStatus",
                    j::list_item(lists::PROJECT_STATUSES, self.status_id),
                ),
                (
                    "ProjectType",
                    j::list_item(lists::PROJECT_TYPES, self.type_id),
                ),
                ("HasImage", json!(false)),
                ("ImageDescription", json!("")),
                ("ActiveStatusMonitorId", json!(0)),
                ("Links", json!([])),
                ("ActiveLinks", json!(0)),
                ("Completed", json!(self.completed)),
                ("NextMilestoneDate", cx.ts(Ts::MIN)),
                ("NmdAppointmentId", json!(0)),
                ("EndDate", cx.ts(self.end_date)),
                ("ActiveErpLinks", json!(0)),
                ("EventId", json!(0)),
                ("StartDate", cx.ts(self.start_date)),
            ],
        );
        j::udf_trio(m, true);
        j::publish(m, cx);
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.name, i.string("name")?);
        take_str(&mut self.project_number, i.string("projectnumber")?);
        take_str(&mut self.description, i.string("description")?);
        take(
            &mut self.associate_id,
            i.nested_id("associate", &["AssociateId"])?,
        );
        take(&mut self.status_id, i.nested_id("projectstatus", &["Id"])?);
        take(&mut self.type_id, i.nested_id("projecttype", &["Id"])?);
        take(&mut self.completed, i.bool("completed")?);
        take(&mut self.start_date, i.ts("startdate")?);
        take(&mut self.end_date, i.ts("enddate")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("name", json!(&*self.name)),
            ("project_number", json!(&*self.project_number)),
            ("text_id", json!(&*self.description)),
            ("associate_id", json!(self.associate_id)),
            ("project_status_idx", json!(self.status_id)),
            ("project_type_idx", json!(self.type_id)),
            ("done", json!(self.completed)),
            ("startDate", json!(self.start_date.0)),
            ("endDate", json!(self.end_date.0)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("associate_id", json!(self.associate_id)),
                ("done", json!(i32::from(self.completed))),
                ("project_id", json!(self.id)),
                ("project_status_idx", json!(self.status_id)),
                ("project_type_idx", json!(self.type_id)),
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
        m.insert("project_id".into(), json!(self.id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "projectId" => Cell::Int(self.id.into()),
            "name" => Cell::Str(Cow::Borrowed(&self.name)),
            "number" => Cell::Str(Cow::Borrowed(&self.project_number)),
            "type" => item(lists::PROJECT_TYPES, self.type_id),
            "status" => item(lists::PROJECT_STATUSES, self.status_id),
            "associateId" => assoc_cell(self.associate_id),
            "completed" => Cell::Bool(self.completed),
            "hasInfoText" => Cell::Bool(!self.description.is_empty()),
            "description" => Cell::Str(Cow::Borrowed(&self.description)),
            "endDate" => Cell::Time(self.end_date),
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
        let mut p = Project::blank();
        p.name = format!("{} {}", g.pick(SUBJECTS), g.pick(lists::COMPANY_WORDS)).into();
        p.project_number = format!("P-{}", g.rng.gen_range(1000..9999)).into();
        p.associate_id = g.other_user();
        p.status_id = g.item(lists::PROJECT_STATUSES);
        p.type_id = g.item(lists::PROJECT_TYPES);
        p.completed = p.status_id == 3;
        p.start_date = audit.created.start_of_day();
        p.end_date = g.after(p.start_date, 365).start_of_day();
        p.audit = audit;
        p
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..3) {
            0 => {
                self.status_id = lists::PROJECT_STATUSES[rng.gen_range(0..3)].id;
                self.completed = self.status_id == 3;
            }
            1 => self.associate_id = rng.gen_range(lists::OTHER_USERS),
            _ => self.description = format!("Updated plan {}", rng.gen_range(1..1000)).into(),
        }
    }
}
