//! [`Error::Config`]: how a configuration error reads (`FILE:LINE: KEY: MESSAGE`, each part
//! when known), and the key and line of an error the TOML deserializer reports.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::values::line_of;
use crate::Error;

/// The text of an [`Error::Config`] after `config: `: `FILE:LINE: KEY: MESSAGE`, `FILE:
/// KEY: MESSAGE` (a value from the environment), `KEY: MESSAGE` or `MESSAGE`.
pub(crate) fn describe(
    file: &Option<String>,
    line: &Option<usize>,
    key: &Option<String>,
    message: &str,
) -> String {
    let mut text = String::new();
    if let Some(file) = file {
        text.push_str(file);
        if let Some(line) = line {
            text.push_str(&format!(":{line}"));
        }
        text.push_str(": ");
    }
    if let Some(key) = key {
        text.push_str(key);
        text.push_str(": ");
    }
    text.push_str(message);
    text
}

impl Error {
    /// A configuration error that names neither file nor key (a name that matches nothing,
    /// a combination the daemon refuses).
    pub fn config(message: String) -> Error {
        Error::Config {
            file: None,
            line: None,
            key: None,
            message,
        }
    }

    /// A configuration error about `key`, not tied to a line (a secret read later).
    pub fn config_key(key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config {
            file: None,
            line: None,
            key: Some(key.to_string()),
            message: message.to_string(),
        }
    }
}

/// An error of the TOML deserializer (broken syntax, an unknown key, a value of the wrong
/// type, a missing key) as a config error naming the line and, when the document parses, the
/// key at that place (`subscription[0].poll_interval`).
pub(super) fn from_toml(text: &str, file: &str, error: &toml::de::Error) -> Error {
    let offset = error.span().map(|span| span.start);
    Error::Config {
        file: Some(file.to_string()),
        line: offset.map(|offset| line_of(text, offset)),
        key: offset.and_then(|offset| key_at(text, offset)),
        message: error.message().to_string(),
    }
}

/// The path of the innermost key whose key or value holds byte `offset` of `text`
/// (`control.token`, `subscription[1].columns[0]`), if `text` is valid TOML. A table given by
/// a header (`[control]`, `[[tenant]]`) spans only its header, so every entry is searched,
/// not only those whose span holds the offset.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    in_table(document.get_ref(), offset, "")
}

fn holds<T>(spanned: &Spanned<T>, offset: usize) -> bool {
    let span = spanned.span();
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        in_value(value.get_ref(), offset, &path)
            .or_else(|| (holds(key, offset) || holds(value, offset)).then_some(path))
    })
}

fn in_value(value: &DeValue<'_>, offset: usize, path: &str) -> Option<String> {
    match value {
        DeValue::Table(table) => in_table(table, offset, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            let path = format!("{path}[{index}]");
            in_value(item.get_ref(), offset, &path).or_else(|| holds(item, offset).then_some(path))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_what_is_known() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            describe(
                &some("syncd.toml"),
                &Some(3),
                &some("control.token"),
                "too short"
            ),
            "syncd.toml:3: control.token: too short"
        );
        assert_eq!(
            describe(
                &some("syncd.toml"),
                &None,
                &some("SYNCD_CONTROL_LISTEN"),
                "bad"
            ),
            "syncd.toml: SYNCD_CONTROL_LISTEN: bad"
        );
        assert_eq!(describe(&None, &None, &some("k"), "m"), "k: m");
        assert_eq!(describe(&None, &None, &None, "m"), "m");
        assert_eq!(
            Error::config_key("control.token", "too short").to_string(),
            "config: control.token: too short"
        );
    }

    #[test]
    fn a_deserializer_error_names_the_key_at_its_place() {
        let text = "store = \"x\"\n\n[[tenant]]\nname = \"a\"\n\n[[tenant]]\nname = 5\n";
        let at = text.rfind('5').unwrap();
        assert_eq!(key_at(text, at).as_deref(), Some("tenant[1].name"));
        let at = text.find("store").unwrap();
        assert_eq!(key_at(text, at).as_deref(), Some("store"));
        let text = "[control]\nallowed_origins = [\"a\", 7]\n";
        assert_eq!(
            key_at(text, text.find('7').unwrap()).as_deref(),
            Some("control.allowed_origins[1]")
        );
        // Broken syntax: no key, the line still.
        assert_eq!(key_at("[control\n", 0), None);
    }
}
