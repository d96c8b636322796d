//! Per-tag accounting of the operations in the spec: generated, excluded (with the reason
//! from the config or the normalisation that removed them), or not selected by the features.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::Result;
use crate::select::{OpRef, op_refs};

/// Operation counts for one tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagCoverage {
    /// Operations with this tag in the upstream spec.
    pub spec: usize,
    /// Generated.
    pub generated: usize,
    /// Excluded, with the reason.
    pub excluded: Vec<(OpRef, String)>,
    /// Not generated because no enabled feature selects the tag.
    pub not_selected: usize,
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Per tag, sorted by tag name.
    pub tags: BTreeMap<String, TagCoverage>,
}

impl Coverage {
    /// Compares the prepared (all operations) document with the selected one.
    pub fn compute(
        upstream_ops: &[OpRef],
        excluded: &BTreeMap<String, String>,
        selected_doc: &Value,
    ) -> Result<Self> {
        let generated: std::collections::BTreeSet<String> = op_refs(selected_doc)?
            .into_iter()
            .map(|o| o.upstream_id)
            .collect();
        let mut tags: BTreeMap<String, TagCoverage> = BTreeMap::new();
        for op in upstream_ops {
            let entry = tags.entry(op.tag.clone()).or_default();
            entry.spec += 1;
            if generated.contains(&op.upstream_id) {
                entry.generated += 1;
            } else if let Some(reason) = excluded.get(&op.upstream_id) {
                entry.excluded.push((op.clone(), reason.clone()));
            } else {
                entry.not_selected += 1;
            }
        }
        Ok(Coverage { tags })
    }

    /// Totals: (spec, generated, excluded, not selected).
    pub fn totals(&self) -> (usize, usize, usize, usize) {
        self.tags.values().fold((0, 0, 0, 0), |(s, g, e, n), t| {
            (
                s + t.spec,
                g + t.generated,
                e + t.excluded.len(),
                n + t.not_selected,
            )
        })
    }

    /// The printed report, ending with `operations: spec=N generated=G excluded=E`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>9} {:>8} {:>12}",
            "tag", "spec", "generated", "excluded", "not selected"
        );
        for (tag, t) in &self.tags {
            let _ = writeln!(
                out,
                "{tag:<32} {:>5} {:>9} {:>8} {:>12}",
                t.spec,
                t.generated,
                t.excluded.len(),
                t.not_selected
            );
        }
        let excluded: Vec<_> = self.tags.values().flat_map(|t| &t.excluded).collect();
        if !excluded.is_empty() {
            let _ = writeln!(out, "\nexcluded:");
            for (op, reason) in excluded {
                let _ = writeln!(
                    out,
                    "  {} {} ({}): {reason}",
                    op.method, op.path, op.upstream_id
                );
            }
        }
        let (spec, generated, excluded, not_selected) = self.totals();
        if not_selected > 0 {
            let _ = writeln!(
                out,
                "\n{not_selected} operations are in tags no enabled feature selects (try --features full)"
            );
        }
        let _ = writeln!(
            out,
            "operations: spec={spec} generated={generated} excluded={excluded}"
        );
        out
    }
}
