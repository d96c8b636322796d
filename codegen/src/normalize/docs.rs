//! `short-info` and `doc-cleanup`: documentation text that becomes rustdoc.

use serde_json::Value;

use crate::Result;

/// Drops `info.description`, which progenitor would paste into `Client`'s docs (11 KB of
/// Markdown with indented blocks that rustdoc runs as doctests).
pub(super) fn short_info(doc: &mut Value) -> Result<String> {
    let removed = doc
        .get_mut("info")
        .and_then(Value::as_object_mut)
        .and_then(|info| info.remove("description"))
        .and_then(|d| d.as_str().map(str::len))
        .unwrap_or(0);
    Ok(format!("info.description dropped ({removed} bytes)"))
}

/// Rewrites every `description`/`summary`: .NET XML doc tags become Markdown, CRLF becomes LF
/// and code blocks are marked `text` so rustdoc never compiles them as doctests.
pub(super) fn doc_cleanup(doc: &mut Value) -> Result<String> {
    let mut changed = 0usize;
    visit(doc, &mut |text| {
        let cleaned = clean(text);
        if cleaned != *text {
            changed += 1;
            *text = cleaned;
        }
    });
    Ok(format!("{changed} descriptions rewritten"))
}

fn visit(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "description" || key == "summary" => f(s),
                    _ => visit(v, f),
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|v| visit(v, f)),
        _ => {}
    }
}

/// Cleans one documentation string.
pub(crate) fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = xml_tags(&text);
    let fenced = fence_code_blocks(&text);
    let mut in_fence = false;
    let lines: Vec<String> = fenced
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return line.to_string();
            }
            if in_fence {
                line.to_string()
            } else {
                prose(line)
            }
        })
        .collect();
    lines.join("\n").trim().to_string()
}

/// Escapes `[text]` that is not a Markdown link (rustdoc would read it as an intra-doc link)
/// and wraps bare URLs in `<…>`, outside inline code.
fn prose(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_code = false;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            in_code = !in_code;
            out.push(c);
            i += 1;
            continue;
        }
        if !in_code && c == '[' {
            let close = chars[i..].iter().position(|&x| x == ']').map(|p| p + i);
            let is_link = close.is_some_and(|j| matches!(chars.get(j + 1), Some('(') | Some('[')));
            if !is_link {
                out.push_str("\\[");
                i += 1;
                continue;
            }
        }
        if !in_code && c == ']' {
            let is_link = matches!(chars.get(i + 1), Some('(') | Some('['));
            if !is_link {
                out.push_str("\\]");
                i += 1;
                continue;
            }
        }
        let rest: String = chars[i..].iter().take(8).collect();
        let preceded = i > 0 && matches!(chars[i - 1], '<' | '(' | '"' | '\'');
        if !in_code && !preceded && (rest.starts_with("http://") || rest.starts_with("https://")) {
            let end = chars[i..]
                .iter()
                .position(|x| x.is_whitespace() || matches!(x, '"' | '\'' | '<' | '>' | ')'))
                .map_or(chars.len(), |p| p + i);
            let mut url: String = chars[i..end].iter().collect();
            let mut trailing = String::new();
            while url.ends_with(['.', ',', ';', ':']) {
                trailing.insert(0, url.pop().expect("not empty"));
            }
            out.push('<');
            out.push_str(&url);
            out.push('>');
            out.push_str(&trailing);
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Replaces the .NET XML doc tags SuperOffice's descriptions use.
fn xml_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            return out;
        };
        let tag = &tail[1..end];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let replacement = match name.as_str() {
            "para" | "p" => Some("\n\n".to_string()),
            "br" => Some("\n".to_string()),
            "c" | "code" | "tt" => Some("`".to_string()),
            "see" | "seealso" | "paramref" | "typeparamref" => {
                let target = attribute(tag, "cref")
                    .or_else(|| attribute(tag, "langword"))
                    .or_else(|| attribute(tag, "name"))
                    .or_else(|| attribute(tag, "href"))
                    .unwrap_or_default();
                let short = target
                    .rsplit(['.', ':'])
                    .next()
                    .unwrap_or(&target)
                    .to_string();
                Some(if short.is_empty() {
                    String::new()
                } else {
                    format!("`{short}`")
                })
            }
            "list" | "item" | "description" | "term" | "summary" | "remarks" | "returns"
            | "value" | "example" | "listheader" => Some(if tag.starts_with('/') {
                "\n".into()
            } else {
                String::new()
            }),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str(&r);
                rest = &tail[end + 1..];
            }
            None => {
                // Not a known doc tag (e.g. `<b>` or `a < b > c`): keep the text as written.
                out.push('<');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}="))? + name.len() + 1;
    let quoted = &tag[start..];
    let quote = quoted.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &quoted[1..];
    value.find(quote).map(|end| value[..end].to_string())
}

/// Marks fenced blocks without a language and indented blocks as ```` ```text ```` so rustdoc
/// renders them but never compiles them.
fn fence_code_blocks(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut in_fence = false;
    let mut in_indented = false;
    let mut previous_blank = true;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            if in_indented {
                out.push("```".into());
                in_indented = false;
            }
            if !in_fence && trimmed.trim_end() == "```" {
                out.push("```text".into());
            } else {
                out.push(trimmed.to_string());
            }
            in_fence = !in_fence;
            previous_blank = false;
            continue;
        }
        if in_fence {
            out.push(line.to_string());
            continue;
        }
        let indented = line.starts_with("    ") || line.starts_with('\t');
        let blank = line.trim().is_empty();
        if in_indented {
            if indented || blank {
                out.push(line.trim_start().to_string());
                previous_blank = blank;
                continue;
            }
            // Trailing blank lines belong after the fence.
            let mut blanks = 0;
            while out.last().is_some_and(|l| l.is_empty()) {
                out.pop();
                blanks += 1;
            }
            out.push("```".into());
            out.extend(std::iter::repeat_n(String::new(), blanks));
            in_indented = false;
        } else if indented && previous_blank && !blank {
            out.push("```text".into());
            out.push(line.trim_start().to_string());
            in_indented = true;
            previous_blank = false;
            continue;
        }
        out.push(line.to_string());
        previous_blank = blank;
    }
    if in_indented || in_fence {
        while in_indented && out.last().is_some_and(|l| l.is_empty()) {
            out.pop();
        }
        out.push("```".into());
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_doc_tags_become_markdown() {
        assert_eq!(
            clean(
                "Gets a <see cref=\"T:SuperOffice.CRM.Services.ContactEntity\" />.<para />Then <c>x</c>."
            ),
            "Gets a `ContactEntity`.\n\nThen `x`."
        );
        assert_eq!(clean("a < b and c > d"), "a < b and c > d");
        assert_eq!(
            clean("<see langword=\"null\"/> means unset"),
            "`null` means unset"
        );
    }

    #[test]
    fn code_blocks_are_never_doctests() {
        let text = "Example:\r\n\r\n    GET /api/v1/Contact\r\n    Accept: json\r\n\r\nDone";
        assert_eq!(
            clean(text),
            "Example:\n\n```text\nGET /api/v1/Contact\nAccept: json\n```\n\nDone"
        );
        assert_eq!(clean("```\nlet x = 1;\n```"), "```text\nlet x = 1;\n```");
        assert_eq!(clean("```json\n{}\n```"), "```json\n{}\n```");
        assert_eq!(clean("Tail:\n\n    code"), "Tail:\n\n```text\ncode\n```");
    }

    #[test]
    fn brackets_and_urls_do_not_confuse_rustdoc() {
        assert_eq!(
            clean("format \"SuperOffice:[UdefFieldIdentity]\""),
            "format \"SuperOffice:\\[UdefFieldIdentity\\]\""
        );
        assert_eq!(
            clean("a [link](http://x) and `[code]`"),
            "a [link](http://x) and `[code]`"
        );
        assert_eq!(
            clean("see https://docs.example/a, then"),
            "see <https://docs.example/a>, then"
        );
        assert_eq!(
            clean("```text\n[raw] http://x\n```"),
            "```text\n[raw] http://x\n```"
        );
    }
}
