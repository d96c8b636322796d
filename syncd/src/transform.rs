//! `transform`: a jq program (run with the `jaq` crates) applied to each record before it is
//! stored, e.g. `{id: .contactId, name: .name | ascii_upcase}` or `del(.FieldProperties)`.
//!
//! The program must produce exactly one value per record; `null` means "skip this record"
//! (it is not stored, and a stored copy is left alone).

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, RcIter};
use jaq_json::Val;
use serde_json::Value;

/// A compiled jq program.
pub struct Transform {
    program: String,
    filter: jaq_core::Filter<Native<Val>>,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("program", &self.program)
            .finish()
    }
}

impl Transform {
    /// Parses and compiles `program`; the error says what is wrong with it.
    pub fn compile(program: &str) -> Result<Transform, String> {
        let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
        let arena = Arena::default();
        let modules = loader
            .load(
                &arena,
                File {
                    code: program,
                    path: (),
                },
            )
            .map_err(|errors| {
                let details: Vec<String> = errors.iter().map(|(_, e)| format!("{e:?}")).collect();
                format!("jq program does not parse: {}", details.join("; "))
            })?;
        let filter = Compiler::default()
            .with_funs(jaq_std::funs().chain(jaq_json::funs()))
            .compile(modules)
            .map_err(|errors| {
                let details: Vec<String> = errors
                    .iter()
                    .flat_map(|(_, es)| {
                        es.iter()
                            .map(|(name, undefined)| format!("{undefined:?} {name}"))
                    })
                    .collect();
                format!("jq program does not compile: {}", details.join("; "))
            })?;
        Ok(Transform {
            program: program.to_string(),
            filter,
        })
    }

    /// The program text.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Runs the program on one record: `Ok(None)` when it produced `null` (skip the record).
    pub fn apply(&self, input: Value) -> Result<Option<Value>, String> {
        let inputs = RcIter::new(core::iter::empty());
        let mut outputs = self.filter.run((Ctx::new([], &inputs), Val::from(input)));
        let first = match outputs.next() {
            Some(Ok(value)) => Value::from(value),
            Some(Err(e)) => return Err(format!("jq: {e}")),
            None => return Err("jq program produced no value for a record".into()),
        };
        if outputs.next().is_some() {
            return Err("jq program produced more than one value for a record".into());
        }
        Ok((!first.is_null()).then_some(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transforms_records() {
        let t = Transform::compile("{id: .contactId, name: (.name | ascii_upcase)}").unwrap();
        assert_eq!(
            t.apply(json!({ "contactId": 5, "name": "ab" })).unwrap(),
            Some(json!({ "id": 5, "name": "AB" }))
        );
        let skip = Transform::compile("if .deleted then null else . end").unwrap();
        assert_eq!(skip.apply(json!({ "deleted": true })).unwrap(), None);
    }

    #[test]
    fn bad_programs_and_runtime_errors_are_reported() {
        assert!(
            Transform::compile(".name |=")
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(
            Transform::compile("nosuchfunction(1)")
                .unwrap_err()
                .contains("does not compile")
        );
        let many = Transform::compile(".[]").unwrap();
        assert!(
            many.apply(json!([1, 2]))
                .unwrap_err()
                .contains("more than one")
        );
        let failing = Transform::compile("error(\"boom\")").unwrap();
        assert!(failing.apply(json!({})).unwrap_err().contains("boom"));
    }
}
