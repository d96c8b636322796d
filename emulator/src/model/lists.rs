//! The tenant's fixed reference data: associates (users) and the MDO lists that entities point
//! at (categories, countries, sale types, …), plus word lists for seeded names.
//!
//! Associate 1 is the interactive API user and associate 2 the system user (both settable in
//! [`crate::config::AuthConfig`]); associates 3–10 are the "other users" whose edits
//! `POST /__admin/activity` simulates.

/// A user of the tenant.
#[derive(Debug, Clone, Copy)]
pub struct Associate {
    /// `AssociateId`.
    pub id: i32,
    /// Login name (`Name`).
    pub name: &'static str,
    /// First name.
    pub first: &'static str,
    /// Last name.
    pub last: &'static str,
    /// `Type` enum value.
    pub kind: &'static str,
}

impl Associate {
    /// `FullName`.
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

/// Every associate of the emulated tenant.
pub static ASSOCIATES: &[Associate] = &[
    Associate {
        id: 1,
        name: "ADM",
        first: "Alice",
        last: "Admin",
        kind: "InternalAssociate",
    },
    Associate {
        id: 2,
        name: "SYSUSER",
        first: "System",
        last: "User",
        kind: "SystemAssociate",
    },
    Associate {
        id: 3,
        name: "BOB",
        first: "Bob",
        last: "Berg",
        kind: "InternalAssociate",
    },
    Associate {
        id: 4,
        name: "CAR",
        first: "Carla",
        last: "Dahl",
        kind: "InternalAssociate",
    },
    Associate {
        id: 5,
        name: "DAN",
        first: "Dan",
        last: "Eng",
        kind: "InternalAssociate",
    },
    Associate {
        id: 6,
        name: "EVA",
        first: "Eva",
        last: "Fjell",
        kind: "InternalAssociate",
    },
    Associate {
        id: 7,
        name: "FIN",
        first: "Finn",
        last: "Holm",
        kind: "InternalAssociate",
    },
    Associate {
        id: 8,
        name: "GRO",
        first: "Gro",
        last: "Lund",
        kind: "InternalAssociate",
    },
    Associate {
        id: 9,
        name: "HAN",
        first: "Hans",
        last: "Moe",
        kind: "InternalAssociate",
    },
    Associate {
        id: 10,
        name: "IDA",
        first: "Ida",
        last: "Nes",
        kind: "ExternalAssociate",
    },
];

/// The associates whose edits `POST /__admin/activity` simulates.
pub const OTHER_USERS: std::ops::RangeInclusive<i32> = 3..=10;

/// Looks up an associate.
pub fn associate(id: i32) -> Option<&'static Associate> {
    ASSOCIATES.iter().find(|a| a.id == id)
}

/// An item of an MDO list.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    /// The list id.
    pub id: i32,
    /// The display value.
    pub name: &'static str,
}

macro_rules! list {
    ($name:ident, $doc:literal, [$(($id:expr, $label:expr)),* $(,)?]) => {
        #[doc = $doc]
        pub static $name: &[Item] = &[$(Item { id: $id, name: $label }),*];
    };
}

list!(
    CATEGORIES,
    "Contact categories.",
    [
        (1, "Customer"),
        (2, "Prospect"),
        (3, "Partner"),
        (4, "Supplier"),
        (5, "Lost customer")
    ]
);
list!(
    BUSINESSES,
    "Contact business types.",
    [
        (1, "IT"),
        (2, "Finance"),
        (3, "Retail"),
        (4, "Manufacturing"),
        (5, "Consulting")
    ]
);
list!(
    POSITIONS,
    "Person positions.",
    [
        (1, "CEO"),
        (2, "CFO"),
        (3, "Sales manager"),
        (4, "Developer"),
        (5, "Buyer")
    ]
);
list!(
    CURRENCIES,
    "Currencies.",
    [(1, "NOK"), (2, "EUR"), (3, "USD"), (4, "SEK")]
);
list!(
    SALE_TYPES,
    "Sale types.",
    [(1, "New business"), (2, "Upsell"), (3, "Renewal")]
);
list!(
    SOURCES,
    "Sale sources.",
    [(1, "Web"), (2, "Referral"), (3, "Fair"), (4, "Cold call")]
);
list!(
    PROJECT_STATUSES,
    "Project statuses.",
    [(1, "Planned"), (2, "In progress"), (3, "Done")]
);
list!(
    PROJECT_TYPES,
    "Project types.",
    [(1, "Internal"), (2, "Customer"), (3, "Event")]
);
list!(
    PRIORITIES,
    "Appointment priorities.",
    [(1, "Low"), (2, "Normal"), (3, "High")]
);
list!(
    DOCUMENT_TEMPLATES,
    "Document templates.",
    [(1, "Letter"), (2, "Offer"), (3, "Contract"), (4, "Memo")]
);
list!(
    TICKET_CATEGORIES,
    "Ticket (request) categories.",
    [(1, "Support"), (2, "Billing"), (3, "Sales")]
);
list!(
    TICKET_PRIORITIES,
    "Ticket priorities.",
    [(1, "Low"), (2, "Medium"), (3, "High"), (4, "Critical")]
);
list!(
    TICKET_STATUSES,
    "User-defined ticket statuses (id equals the base status they map to).",
    [(1, "Open"), (2, "Closed"), (3, "Postponed"), (4, "Deleted")]
);
list!(
    SELECTION_CATEGORIES,
    "Selection categories.",
    [(1, "Marketing"), (2, "Sales"), (3, "Service")]
);
list!(
    TICKET_ORIGINS,
    "Ticket origins (Origin enum order).",
    [
        (0, "Unknown"),
        (1, "Email"),
        (2, "SMS"),
        (3, "Fax"),
        (4, "Phone"),
        (5, "Facebook"),
        (6, "Twitter"),
        (7, "Internal"),
        (8, "CustomerCentre"),
        (9, "EMarketing"),
        (10, "AutoGenerated"),
        (11, "Chat"),
        (12, "Form"),
        (13, "API"),
        (14, "Flow")
    ]
);
list!(
    SALE_STATUSES,
    "Sale status values (SaleStatus enum order).",
    [
        (0, "Unknown"),
        (1, "Open"),
        (2, "Sold"),
        (3, "Lost"),
        (4, "Stalled")
    ]
);
list!(
    COMPLETED,
    "Activity completion values (ActivityStatus enum order).",
    [
        (0, "Unknown"),
        (1, "NotStarted"),
        (2, "Started"),
        (3, "Completed")
    ]
);
list!(
    TICKET_BASE_STATUSES,
    "Ticket base statuses (TicketBaseStatus values).",
    [
        (0, "Unknown"),
        (1, "Active"),
        (2, "Closed"),
        (3, "Postponed"),
        (4, "Deleted"),
        (5, "Merged"),
        (6, "Spam")
    ]
);
list!(
    APPOINTMENT_TYPES,
    "Appointment record types (AppointmentType enum order).",
    [
        (0, "Unknown"),
        (1, "inDiary"),
        (2, "inChecklist"),
        (3, "Note"),
        (4, "Document"),
        (5, "SavedReport"),
        (6, "BookingForDiary"),
        (7, "BookingForChecklist"),
        (8, "MergeDraft"),
        (9, "MergeFinal")
    ]
);
list!(
    TASKS,
    "Follow-up types (task list).",
    [
        (1, "Meeting"),
        (2, "Phone call"),
        (3, "To-do"),
        (4, "E-mail")
    ]
);
list!(
    SELECTION_KINDS,
    "Selection types (SelectionType enum order).",
    [(0, "Static"), (1, "Dynamic"), (2, "Combined")]
);

/// Looks up an item's display value; empty for 0 or unknown ids.
pub fn label(list: &'static [Item], id: i32) -> &'static str {
    list.iter()
        .find(|i| i.id == id)
        .map(|i| i.name)
        .unwrap_or("")
}

/// Finds an id by display value (case-insensitive).
pub fn id_of(list: &'static [Item], name: &str) -> Option<i32> {
    list.iter()
        .find(|i| i.name.eq_ignore_ascii_case(name))
        .map(|i| i.id)
}

/// A country.
#[derive(Debug, Clone, Copy)]
pub struct Country {
    /// `CountryId` (ISO numeric).
    pub id: i32,
    /// English name.
    pub name: &'static str,
    /// ISO alpha-2.
    pub iso2: &'static str,
    /// ISO alpha-3.
    pub iso3: &'static str,
    /// Currency id in [`CURRENCIES`].
    pub currency: i32,
    /// Top-level domain.
    pub domain: &'static str,
    /// Dial-in prefix.
    pub dial: &'static str,
}

/// Countries used by seeded data.
pub static COUNTRIES: &[Country] = &[
    Country {
        id: 578,
        name: "Norway",
        iso2: "NO",
        iso3: "NOR",
        currency: 1,
        domain: ".no",
        dial: "+47",
    },
    Country {
        id: 752,
        name: "Sweden",
        iso2: "SE",
        iso3: "SWE",
        currency: 4,
        domain: ".se",
        dial: "+46",
    },
    Country {
        id: 208,
        name: "Denmark",
        iso2: "DK",
        iso3: "DNK",
        currency: 2,
        domain: ".dk",
        dial: "+45",
    },
    Country {
        id: 276,
        name: "Germany",
        iso2: "DE",
        iso3: "DEU",
        currency: 2,
        domain: ".de",
        dial: "+49",
    },
    Country {
        id: 528,
        name: "Netherlands",
        iso2: "NL",
        iso3: "NLD",
        currency: 2,
        domain: ".nl",
        dial: "+31",
    },
    Country {
        id: 826,
        name: "United Kingdom",
        iso2: "GB",
        iso3: "GBR",
        currency: 2,
        domain: ".uk",
        dial: "+44",
    },
    Country {
        id: 840,
        name: "United States",
        iso2: "US",
        iso3: "USA",
        currency: 3,
        domain: ".us",
        dial: "+1",
    },
];

/// Looks up a country.
pub fn country(id: i32) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.id == id)
}

/// First words of seeded company names.
pub static COMPANY_WORDS: &[&str] = &[
    "Nordic",
    "Fjord",
    "Polar",
    "Aurora",
    "Granite",
    "Birch",
    "Harbor",
    "Summit",
    "Blue",
    "Iron",
    "Silver",
    "North",
    "Coast",
    "Valley",
    "Pine",
    "Glacier",
    "Amber",
    "Falcon",
    "Delta",
    "Oak",
    "Cedar",
    "Viking",
    "Lighthouse",
    "Meadow",
    "Ridge",
    "Stone",
    "River",
    "Crystal",
    "Maple",
    "Eagle",
];

/// Second words of seeded company names.
pub static COMPANY_TRADES: &[&str] = &[
    "Consulting",
    "Software",
    "Logistics",
    "Foods",
    "Energy",
    "Systems",
    "Design",
    "Marine",
    "Analytics",
    "Textiles",
    "Builders",
    "Media",
    "Health",
    "Robotics",
    "Travel",
    "Finance",
];

/// Legal-form suffixes of seeded company names.
pub static COMPANY_FORMS: &[&str] = &["AS", "AB", "ApS", "GmbH", "B.V.", "Ltd", "Inc"];

/// Departments (often empty).
pub static DEPARTMENTS: &[&str] = &["", "", "", "Sales", "Support", "Finance", "R&D", "HQ"];

/// Seeded first names.
pub static FIRST_NAMES: &[&str] = &[
    "Anna", "Bjørn", "Camilla", "David", "Emma", "Fredrik", "Greta", "Henrik", "Ingrid", "Jonas",
    "Kari", "Lars", "Maja", "Nils", "Olivia", "Per", "Quinn", "Rita", "Sven", "Tone", "Ulf",
    "Vera", "William", "Xenia", "Yngve", "Zara", "Åse", "Øystein", "Elin", "Magnus",
];

/// Seeded last names.
pub static LAST_NAMES: &[&str] = &[
    "Andersen",
    "Berg",
    "Christensen",
    "Dahl",
    "Eriksen",
    "Fossum",
    "Gundersen",
    "Hansen",
    "Iversen",
    "Johansen",
    "Karlsen",
    "Larsen",
    "Moen",
    "Nilsen",
    "Olsen",
    "Pedersen",
    "Quist",
    "Rasmussen",
    "Solberg",
    "Thorsen",
    "Ulvestad",
    "Vik",
    "Wold",
    "Zahl",
    "Aasen",
    "Østby",
];

/// Seeded project/sale/appointment subject words.
pub static SUBJECTS: &[&str] = &[
    "Kick-off",
    "Renewal",
    "Migration",
    "Workshop",
    "Follow-up",
    "Audit",
    "Rollout",
    "Upgrade",
    "Training",
    "Review",
    "Pilot",
    "Integration",
    "Onboarding",
    "Planning",
    "Demo",
];

/// Seeded ticket titles.
pub static TICKET_TITLES: &[&str] = &[
    "Cannot log in",
    "Invoice question",
    "Feature request",
    "Error on export",
    "Password reset",
    "Slow search",
    "Change of address",
    "Missing data",
    "License renewal",
    "API question",
];
