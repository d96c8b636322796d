//! Ticket (request): `TicketEntity`, archive `Ticket`, webhook entity `ticket` (created and
//! changed only). A DELETE sets the base status to 4 (Deleted) and bumps `LastChanged`, as
//! FACTS §3.2 describes, so deleted tickets stay readable and visible to `lastChanged` polling.

use std::borrow::Cow;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::contact::{assoc_cell, assoc_full, item};
use super::lists::{self, TICKET_TITLES};
use super::{
    Audit, Cell, ColType as T, Column, Cx, Entity, EntityType, Gen, Input, Refs, col,
    json_parts as j, take, take_str,
};
use crate::clock::Ts;
use crate::error::SoError;

/// Base status `Deleted`.
pub const STATUS_DELETED: u8 = 4;

/// A request.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// `TicketId`.
    pub id: i32,
    /// `Title`.
    pub title: Box<str>,
    /// `Author`.
    pub author: Box<str>,
    /// `Person` (the customer, `cust_id`).
    pub person_id: i32,
    /// The person's company at creation (`contact_id`).
    pub contact_id: i32,
    /// `OwnedBy`.
    pub owned_by: i32,
    /// `Category`.
    pub category_id: i32,
    /// `Priority`.
    pub priority_id: i32,
    /// `Sale`.
    pub sale_id: i32,
    /// `Project`.
    pub project_id: i32,
    /// `BaseStatus` (1 Active, 2 Closed, 3 Postponed, 4 Deleted, …).
    pub base_status: u8,
    /// `Origin`.
    pub origin: u8,
    /// `Deadline`.
    pub deadline: Ts,
    /// `ClosedAt`.
    pub closed_at: Ts,
    /// Audit fields: `created` is `CreatedAt`, `updated` is `LastChanged`.
    pub audit: Audit,
    /// Unmodelled properties set by clients.
    pub extra: Option<Box<Map<String, Value>>>,
}

static COLUMNS: &[Column] = &[
    col("ticketId", T::Int),
    col("title", T::Str),
    col("createdAt", T::DateTime),
    col("lastChanged", T::DateTime),
    col("author", T::Str),
    col("status", T::List),
    col("ticketStatusName", T::List),
    col("categoryFullName", T::List),
    col("priorityName", T::List),
    col("origin", T::List),
    col("ownedBy", T::Assoc),
    col("createdBy", T::Assoc),
    col("personId", T::Int),
    col("contactId", T::Int),
    col("saleId", T::Int),
    col("projectId", T::Int),
    col("deadline", T::DateTime),
    col("closedAt", T::DateTime),
    col("numberOfMessages", T::Int),
    col("ownedBy/fullName", T::Str),
];

impl Entity for Ticket {
    const TYPE: EntityType = EntityType::Ticket;
    const TYPED: &'static [&'static str] = &[
        "title",
        "author",
        "person",
        "ownedby",
        "category",
        "priority",
        "sale",
        "project",
        "basestatus",
        "status",
        "origin",
        "deadline",
        "closedat",
    ];
    const DERIVED: &'static [&'static str] = &[
        "createdat",
        "lastchanged",
        "createdby",
        "nummessages",
        "tableright",
        "fieldproperties",
        "_links",
    ];
    const CHILD: &'static [&'static str] = &[
        "messages",
        "tags",
        "secondarypersons",
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
    fn is_deleted(&self) -> bool {
        self.base_status == STATUS_DELETED
    }

    fn link(&mut self, db: &crate::store::Db) {
        self.contact_id = db
            .persons
            .get(self.person_id)
            .map(|p| p.contact_id)
            .unwrap_or(0);
    }

    fn blank() -> Self {
        Ticket {
            id: 0,
            title: "".into(),
            author: "".into(),
            person_id: 0,
            contact_id: 0,
            owned_by: 0,
            category_id: 0,
            priority_id: 0,
            sale_id: 0,
            project_id: 0,
            base_status: 1,
            origin: 13,
            deadline: Ts::MIN,
            closed_at: Ts::MIN,
            audit: Audit::created(Ts::MIN, 0),
            extra: None,
        }
    }

    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>) {
        let category = if self.category_id == 0 {
            Value::Null
        } else {
            let name = lists::label(lists::TICKET_CATEGORIES, self.category_id);
            json!({
                "TicketCategoryId": self.category_id,
                "ParentId": 0,
                "Name": name,
                "Fullname": name,
                "CategoryMaster": 0,
                "Flags": "Unknown",
                "DelegateMethod": "Even",
                "ExternalName": name,
                "ClosingStatus": "UserDefined",
                "MsgClosingStatus": "UserDefined",
                "AssignmentLag": 0,
                "ReplyTemplate": 0,
                "NotificationEmail": "",
                "DefaultTicketStatus": null,
                "DefaultMessageStatus": null,
                "EffectiveReplyTemplateId": 0,
                "ExtraFields": {},
                "CustomFields": {},
                "TableRight": null,
                "FieldProperties": {},
            })
        };
        let priority = if self.priority_id == 0 {
            Value::Null
        } else {
            let mut p = Map::new();
            j::put(
                &mut p,
                vec![
                    ("TicketPriorityId", json!(self.priority_id)),
                    (
                        "Name",
                        json!(lists::label(lists::TICKET_PRIORITIES, self.priority_id)),
                    ),
                    ("Status", json!("Normal")),
                    ("Flags", json!("Unknown")),
                    ("SortOrder", json!(self.priority_id)),
                    ("TicketRead", json!("None")),
                    ("ChangedOwner", json!("None")),
                    ("TicketNewinfo", json!("None")),
                    ("TicketClosed", json!("None")),
                    ("TicketChangedPriority", json!("None")),
                    ("TicketNew", json!("None")),
                    ("Deadline", json!(0)),
                ],
            );
            for day in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] {
                p.insert(format!("{day}Start"), cx.ts(Ts::MIN));
                p.insert(format!("{day}Stop"), cx.ts(Ts::MIN));
            }
            p.insert("NonDates".into(), json!([]));
            p.insert("EscalationLevels".into(), json!([]));
            p.insert("TableRight".into(), Value::Null);
            p.insert("FieldProperties".into(), json!({}));
            Value::Object(p)
        };
        let base = lists::label(lists::TICKET_BASE_STATUSES, self.base_status.into());
        let status = json!({
            "TicketStatusId": self.base_status,
            "Name": lists::label(lists::TICKET_STATUSES, self.base_status.into()),
            "Status": base,
            "TimeCounter": "Externally",
            "NoEmailReopen": false,
            "IsDefault": self.base_status == 1,
            "UsedInQueue": self.base_status == 1,
            "TableRight": null,
            "FieldProperties": {},
        });
        j::put(
            m,
            vec![
                ("TicketId", json!(self.id)),
                ("Title", json!(&*self.title)),
                ("CreatedAt", cx.ts(self.audit.created)),
                ("LastChanged", cx.ts(self.audit.updated)),
                ("ReadByOwner", cx.ts(Ts::MIN)),
                ("ReadByCustomer", cx.ts(Ts::MIN)),
                ("FirstReadByOwner", cx.ts(Ts::MIN)),
                ("FirstReadByUser", cx.ts(Ts::MIN)),
                ("Activate", cx.ts(Ts::MIN)),
                ("ClosedAt", cx.ts(self.closed_at)),
                ("RepliedAt", cx.ts(Ts::MIN)),
                ("AlertTimeout", cx.ts(Ts::MIN)),
                ("Deadline", cx.ts(self.deadline)),
                ("CreatedBy", j::associate(self.audit.created_by)),
                ("Author", json!(&*self.author)),
                ("OwnedBy", j::associate(self.owned_by)),
                ("Category", category),
                ("Slevel", json!("External")),
                ("Priority", priority),
                ("BaseStatus", json!(base)),
                ("Status", status),
                (
                    "Origin",
                    json!(lists::label(lists::TICKET_ORIGINS, self.origin.into())),
                ),
                ("Person", j::person_summary(cx, self.person_id)),
                ("SecondaryPersons", json!([])),
                ("AlertLevel", json!(0)),
                ("ConnectId", json!(0)),
                ("ReadStatus", json!("Green")),
                ("TimeToReply", json!(0)),
                ("RealTimeToReply", json!(0)),
                ("TimeToClose", json!(0)),
                ("RealTimeToClose", json!(0)),
                ("TimeSpentInternally", json!(0)),
                ("TimeSpentExternally", json!(0)),
                ("TimeSpentQueue", json!(0)),
                ("RealTimeSpentInternally", json!(0)),
                ("RealTimeSpentExternally", json!(0)),
                ("RealTimeSpentQueue", json!(0)),
                ("TimeSpent", json!(0)),
                ("HasAttachment", json!(false)),
                ("NumReplies", json!(0)),
                ("NumMessages", json!(1)),
                ("FromAddress", json!("")),
                ("Messages", json!([])),
                ("Tags", json!([])),
                ("Language", json!("")),
                ("Sentiment", json!(0)),
                ("SentimentConfidence", json!(0)),
                ("SuggestedCategoryId", json!(0)),
                ("SuggestedCategoryName", json!("")),
                ("OrigHumanCategoryId", json!(0)),
                ("IconHint", json!("")),
                ("Sale", j::sale_summary(cx, self.sale_id)),
                ("Project", j::project_summary(cx, self.project_id)),
                ("FormSubmission", Value::Null),
                ("TicketType", Value::Null),
                ("ActiveStatusMonitorId", json!(0)),
            ],
        );
        j::udf_trio(m, false);
        j::tail(m);
    }

    fn apply(&mut self, i: &Input<'_>) -> Result<(), SoError> {
        take_str(&mut self.title, i.string("title")?);
        take_str(&mut self.author, i.string("author")?);
        take(&mut self.person_id, i.nested_id("person", &["PersonId"])?);
        take(
            &mut self.owned_by,
            i.nested_id("ownedby", &["AssociateId"])?,
        );
        take(
            &mut self.category_id,
            i.nested_id("category", &["TicketCategoryId"])?,
        );
        take(
            &mut self.priority_id,
            i.nested_id("priority", &["TicketPriorityId"])?,
        );
        take(&mut self.sale_id, i.nested_id("sale", &["SaleId"])?);
        take(
            &mut self.project_id,
            i.nested_id("project", &["ProjectId"])?,
        );
        if let Some(b) = i.enum_id("basestatus", lists::TICKET_BASE_STATUSES)? {
            self.base_status = b.clamp(0, 6) as u8;
        } else if let Some(s) = i.nested_id("status", &["TicketStatusId"])? {
            self.base_status = s.clamp(0, 6) as u8;
        }
        if let Some(o) = i.enum_id("origin", lists::TICKET_ORIGINS)? {
            self.origin = o.clamp(0, 14) as u8;
        }
        take(&mut self.deadline, i.ts("deadline")?);
        take(&mut self.closed_at, i.ts("closedat")?);
        Ok(())
    }

    fn db_columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("title", json!(&*self.title)),
            ("author", json!(&*self.author)),
            ("cust_id", json!(self.person_id)),
            ("contact_id", json!(self.contact_id)),
            ("owned_by", json!(self.owned_by)),
            ("category", json!(self.category_id)),
            ("priority", json!(self.priority_id)),
            ("sale_id", json!(self.sale_id)),
            ("project_id", json!(self.project_id)),
            ("status", json!(self.base_status)),
            ("ticket_status", json!(self.base_status)),
            ("origin", json!(self.origin)),
            ("deadline", json!(self.deadline.0)),
            ("closed_at", json!(self.closed_at.0)),
        ]
    }

    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        j::put(
            &mut m,
            vec![
                ("category", json!(self.category_id)),
                ("contact_id", json!(self.contact_id)),
                ("created_at", cx.ts(self.audit.created)),
                ("cust_id", json!(self.person_id)),
                ("last_changed", cx.ts(self.audit.updated)),
                ("owned_by", json!(self.owned_by)),
                ("priority", json!(self.priority_id)),
                ("status", json!(self.base_status)),
                ("ticket_status", json!(self.base_status)),
            ],
        );
        m
    }

    fn delete_values(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        let a = &self.audit;
        match col {
            "ticketId" => Cell::Int(self.id.into()),
            "title" => Cell::Str(Cow::Borrowed(&self.title)),
            "createdAt" => Cell::Time(a.created),
            "lastChanged" => Cell::Time(a.updated),
            "author" => Cell::Str(Cow::Borrowed(&self.author)),
            "status" => item(lists::TICKET_BASE_STATUSES, self.base_status.into()),
            "ticketStatusName" => item(lists::TICKET_STATUSES, self.base_status.into()),
            "categoryFullName" => item(lists::TICKET_CATEGORIES, self.category_id),
            "priorityName" => item(lists::TICKET_PRIORITIES, self.priority_id),
            "origin" => item(lists::TICKET_ORIGINS, self.origin.into()),
            "ownedBy" => assoc_cell(self.owned_by),
            "createdBy" => assoc_cell(a.created_by),
            "personId" => Cell::Int(self.person_id.into()),
            "contactId" => Cell::Int(self.contact_id.into()),
            "saleId" => Cell::Int(self.sale_id.into()),
            "projectId" => Cell::Int(self.project_id.into()),
            "deadline" => Cell::Time(self.deadline),
            "closedAt" => Cell::Time(self.closed_at),
            "numberOfMessages" => Cell::Int(1),
            "ownedBy/fullName" => assoc_full(self.owned_by),
            _ => Cell::Null,
        }
    }

    fn seed(g: &mut Gen<'_>) -> Self {
        let mut audit = g.audit();
        // Tickets always carry a last_changed value.
        if audit.updated.is_min() {
            audit.updated = audit.created;
        }
        let mut t = Ticket::blank();
        t.person_id = Refs::pick(g.rng, g.refs.persons, 10);
        t.title = g.pick(TICKET_TITLES).into();
        t.author = format!("customer{}@example.com", g.rng.gen_range(1..10_000)).into();
        t.owned_by = g.other_user();
        t.category_id = g.item(lists::TICKET_CATEGORIES);
        t.priority_id = g.item(lists::TICKET_PRIORITIES);
        t.base_status = g.rng.gen_range(1..=3);
        t.origin = g.pick(&[1u8, 4, 11, 12, 13]);
        t.deadline = g.after(audit.created, 14);
        if t.base_status == 2 {
            t.closed_at = audit.updated;
        }
        t.audit = audit;
        t
    }

    fn mutate(&mut self, rng: &mut ChaCha8Rng, _refs: &Refs) {
        match rng.gen_range(0..3) {
            0 => self.base_status = rng.gen_range(1..=3),
            1 => self.priority_id = lists::TICKET_PRIORITIES[rng.gen_range(0..4)].id,
            _ => self.owned_by = rng.gen_range(lists::OTHER_USERS),
        }
    }
}
