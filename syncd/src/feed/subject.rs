//! NATS subjects of change events: the `[[sink]] subject` template (parsed when the
//! configuration is read, rendered per change by the sinks).

use super::ChangeEvent;

/// A subject template (`superoffice.{tenant}.{entity}.{op}`): dot-separated tokens, each a
/// literal or exactly one placeholder (`{tenant}`, `{subscription}`, `{entity}`, `{op}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Tenant,
    Subscription,
    Entity,
    Op,
}

impl Template {
    /// Parses and checks a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut tokens = Vec::new();
        for part in text.split('.') {
            let token = match part {
                "{tenant}" => Token::Tenant,
                "{subscription}" => Token::Subscription,
                "{entity}" => Token::Entity,
                "{op}" => Token::Op,
                "" => return Err(format!("{text:?} has an empty token")),
                p if p.contains(['{', '}', '*', '>']) || p.chars().any(char::is_whitespace) => {
                    return Err(format!(
                        "{text:?}: token {p:?} is neither a literal nor one of {{tenant}}, \
                         {{subscription}}, {{entity}}, {{op}}"
                    ));
                }
                p => Token::Literal(p.to_string()),
            };
            tokens.push(token);
        }
        Ok(Template(tokens))
    }

    /// The subject of one change; each value is [`sanitise`]d to one token.
    pub fn subject(&self, event: &ChangeEvent) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|t| match t {
                Token::Literal(l) => l.clone(),
                Token::Tenant => sanitise(event.tenant.as_deref().unwrap_or("")),
                Token::Subscription => sanitise(&event.subscription),
                Token::Entity => sanitise(&event.entity),
                Token::Op => event.op.as_str().to_string(),
            })
            .collect();
        parts.join(".")
    }

    /// The template with each placeholder as `*`: every subject it can make.
    pub fn wildcard(&self) -> String {
        let parts: Vec<&str> = self
            .0
            .iter()
            .map(|t| match t {
                Token::Literal(l) => l.as_str(),
                _ => "*",
            })
            .collect();
        parts.join(".")
    }
}

/// One subject token from a value: `.`, `*`, `>` and whitespace become `_`; empty becomes `_`.
pub fn sanitise(value: &str) -> String {
    if value.is_empty() {
        return "_".to_string();
    }
    value
        .chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}
