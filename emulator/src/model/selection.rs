//! Selection: `SelectionEntity`, archive `FindSelection`. Selections fire no webhooks and are
//! hard-deleted.

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

/// A selection.
#[derive(Debug, Clone)]
pub struct Selection {
    /// `SelectionId`.
    pub id: i32,
    /// `Name`.
    pub name: Box<str>,
    /// `Description`.
    pub description: Box<str>,
    /// `Postit`.
    pub postit: Box<str>,
    /// `Associate` (owner).
    pub associate_id: i32,
    /// `SelectionCategory`.
    pub category_id: i32,
    /// `SelectionType` (0 Static, 1 Dynamic, 2 Combined).
    pub kind: u8,
    /// `TargetTableNumber` (5 contact, 6 person, …).
    pub target_table: i32,
    /// `MemberCount`.
    pub member_count: i64,
    /// `Completed`.
    pub completed: bool,
    /// Audit fields.
    pub audit: Audit,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("selectionId", T::Int),
    col("name", T::Str),
    col("type", T::List),
    col("kind", T::List),
    col("targetTableNumber", T::Int),
    col("associateId", T::Assoc),
    col("done", T::Bool),
    col("memberCount", T::Int),
    col("updatedBy", T::Assoc),
    col("updatedByFullName", T::Str),
    col("updatedDate", T::Date),
    col("registeredBy", T::Assoc),
    col("registeredByFullName", T::Str),
    col("registeredDate", T::Date),
];

fn target_table_name(n: i32) -> &'static str {
    match n {
        5 => "contact",
        6 => "person",
        9 => "appointment",
        13 => "sale",
        11 => "project",
        _ => "",
    }
}

impl Entity for Selection {
    const TYPE: EntityType = EntityType::Selection;
    const TYPED: &'static [&'static str] = &[
        "name",
        "description",
        "postit",
        "associate",
        "selectioncategory",
        "selectiontype",
        "targettablenumber",
        "membercount",
        "completed",
    ];
    const DERIVED: &'static [&'static str] = &[
        "updateddate",
        "createddate",
        "updatedby",
        "createdby",
        "updatedcount",
        "targettablename",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &["visiblefor"];

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
        Selection {
            id: 0,
            name: "".into(),
            description: "".into(),
            postit: "".into(),
            associate_id: 0,
            category_id: 0,
            kind: 0,
            target_table: 5,
            member_count: 0,
            completed: false,
            audit: Audit::created(Ts::MIN, 0),
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        j::put(
            m,
            vec![
                ("Description", json!(&*self.description)),
                ("Postit", json!(&*self.postit)),
                ("Associate", j::associate(self.associate_id)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("UpdatedBy", j::associate(self.audit.updated_by)),
                (
                    "SelectionCategory",
                    j::list_item(lists::SELECTION_CATEGORIES, self.category_id),
                ),
                ("GroupIdx", json!(1)),
                ("IncludePerson", json!(0)),
                ("MemberCount", json!(self.member_count)),
                ("Name", json!(&*self.name)),
                ("PostitTextId", json!(0)),
                ("CreatedDate", cx.ts(self.audit.created)),
                ("SelectionId", json!(self.id)),
                ("SoundEx", json!("")),
                ("Source", json!(0)),
                ("TextId", json!(0)),
                ("UpdatedDate", cx.ts(self.audit.updated)),
                ("UpdatedCount", json!(self.audit.updated_count)),
                ("Visibility", json!(0)),
                (
                    "SelectionType",
                    json!(lists::label(lists::SELECTION_KINDS, self.kind.into())),
                ),
                ("CompanyUnique", json!(false)),
                ("TargetTableNumber", json!(self.target_table)),
                (
                    "TargetTableName",
                    json!(target_table_name(self.target_table)),
                ),
                ("Completed", json!(self.completed)),
                ("LeftSelectionId", json!(0)),
                ("RightSelectionId", json!(0)),
                ("SelectionUnionType", json!("Unknown")),
                ("MainProviderName", json!("")),
                ("ShadowProviderName", json!("")),
                ("ChartKey", json!("")),
                ("LastLoaded", cx.ts(Ts::MIN)),
                ("LastLoadedBy", json!(0)),
                ("LastLoadedByAssociate", Value::Null),
                ("LastMembershipChange", cx.ts(Ts::MIN)),
                ("LastMembershipChangeBy", json!(0)),
                ("LastMembershipChangeByAssociate", Value::Null),
                ("MainHeading", json!("")),
                ("MemberTabHeading", json!("")),
                ("MailingsProviderName", json!("")),
                ("DashboardTileDefinitionId", json!(0)),
                ("VisibleFor", json!([])),
            ],
        );
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.name, i.string("name")?);
        take_str(&mut self.description, i.string("description")?);
        take_str(&mut self.postit, i.string("postit")?);
        take(
            &mut self.associate_id,
            i.nested_id("associate", &["AssociateId"])?,
        );
        take(
            &mut self.category_id,
            i.nested_id("selectioncategory", &["Id"])?,
        );
        if let Some(k) = i.enum_id("selectiontype", lists::SELECTION_KINDS)? {
            self.kind = k.clamp(0, 2) as u8;
        }
        take(&mut self.target_table, i.int("targettablenumber")?);
        if let Some(n) = i.float("membercount")? {
            self.member_count = n as i64;
        }
        take(&mut self.completed, i.bool("completed")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("name", json!(&*self.name)),
            ("text_id", json!(&*self.description)),
            ("postit", json!(&*self.postit)),
            ("associate_id", json!(self.associate_id)),
            ("seltype_id", json!(self.category_id)),
            ("selectionType", json!(self.kind)),
            ("targetTableNumber", json!(self.target_table)),
            ("memberCount", json!(self.member_count)),
            ("done", json!(self.completed)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("selection_id".into(), json!(self.id));
        m.insert("updated".into(), cx.ts(self.audit.updated));
        m
    }

    fn delete_values(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("selection_id".into(), json!(self.id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "selectionId" => Cell::Int(self.id.into()),
            "name" => Cell::Str(Cow::Borrowed(&self.name)),
            "type" => item(lists::SELECTION_CATEGORIES, self.category_id),
            "kind" => item(lists::SELECTION_KINDS, self.kind.into()),
            "targetTableNumber" => Cell::Int(self.target_table.into()),
            "associateId" => assoc_cell(self.associate_id),
            "done" => Cell::Bool(self.completed),
            "memberCount" => Cell::Int(self.member_count),
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
        let mut s = Selection::blank();
        s.name = format!("{} list {}", g.pick(SUBJECTS), g.rng.gen_range(1..100)).into();
        s.associate_id = g.other_user();
        s.category_id = g.item(lists::SELECTION_CATEGORIES);
        s.kind = g.rng.gen_range(0..=1);
        s.target_table = g.pick(&[5, 6]);
        s.member_count = g.rng.gen_range(0..5000);
        s.audit = audit;
        s
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..2) {
            0 => self.member_count = rng.gen_range(0..5000),
            _ => self.completed = !self.completed,
        }
    }
}
