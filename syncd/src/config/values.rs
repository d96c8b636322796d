//! What every section is validated with: the [`Ctx`] that turns a raw key into a typed value
//! or an error naming the file, line and key, and the duration syntax of the file.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::secret::{SecretRef, SecretSource};
use crate::{Error, Result};

/// One second, the smallest of most duration ranges.
pub(super) const SECOND: Duration = Duration::from_secs(1);
/// One day.
pub(super) const DAY: Duration = Duration::from_secs(86_400);
/// `outbox.backoff`, `outbox.max_backoff` and the `[supervisor]` durations.
pub(super) const BACKOFF: RangeInclusive<Duration> = Duration::from_millis(1)..=DAY;

/// Parses durations like `30s`, `5m`, `6h`, `1d`, `250ms`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 5m, 6h or 1d"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long"))
}

/// Formats a duration the way the config writes them (`250ms`, `30s`, `5m`, `6h`, `1d`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Turns a byte offset into a 1-based line number.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The document being validated: errors name its file and the line of a key.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
}

impl Ctx<'_> {
    /// The line of a spanned raw value.
    pub(super) fn line<T>(&self, span: &Spanned<T>) -> usize {
        line_of(self.text, span.span().start)
    }

    /// An error about `key` at the line of `span`.
    pub(super) fn at<T>(
        &self,
        span: &Spanned<T>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> Error {
        Error::Config {
            file: Some(self.file.to_string()),
            line: Some(self.line(span)),
            key: Some(key.to_string()),
            message: message.to_string(),
        }
    }

    /// An error about `key` without a line (a value from the environment).
    pub(super) fn plain(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config {
            file: Some(self.file.to_string()),
            line: None,
            key: Some(key.to_string()),
            message: message.to_string(),
        }
    }

    /// A duration key within `range` (the default when absent).
    pub(super) fn duration(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration> {
        let Some(v) = value else {
            return Ok(default);
        };
        let duration = parse_duration(v.get_ref()).map_err(|e| self.at(v, key, e))?;
        if !range.contains(&duration) {
            return Err(self.at(
                v,
                key,
                format!(
                    "{:?} is out of range: give {} to {}",
                    v.get_ref(),
                    format_duration(*range.start()),
                    format_duration(*range.end())
                ),
            ));
        }
        Ok(duration)
    }

    /// An optional duration key within `range` (`None` when absent).
    pub(super) fn optional_duration(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        range: RangeInclusive<Duration>,
    ) -> Result<Option<Duration>> {
        value
            .map(|v| self.duration(Some(v), key, *range.start(), range.clone()))
            .transpose()
    }

    /// A secret key, kept to be read when needed ([`SecretRef::resolve`]). Only its form is
    /// checked now: exactly one source.
    pub(super) fn secret(
        &self,
        value: Option<&Spanned<SecretSource>>,
        key: &str,
    ) -> Result<Option<SecretRef>> {
        value
            .map(|v| self.secret_ref(v, key, v.get_ref().clone()))
            .transpose()
    }

    /// `source` (written at `span`) as the secret `key`, if it names exactly one source.
    pub(super) fn secret_ref<T>(
        &self,
        span: &Spanned<T>,
        key: &str,
        source: SecretSource,
    ) -> Result<SecretRef> {
        if !source.has_one_source() {
            return Err(self.at(
                span,
                key,
                "give exactly one of env, file, credential, value",
            ));
        }
        Ok(SecretRef::new(key, self.file, self.line(span), source))
    }

    /// An integer key within `range` (the default when absent), as the type it is used as.
    pub(super) fn count<T: TryFrom<i64>>(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
        default: T,
        range: RangeInclusive<i64>,
    ) -> Result<T> {
        let Some(v) = value else {
            return Ok(default);
        };
        let n = self.number(Some(v), key, 0, range)?;
        T::try_from(n).map_err(|_| self.at(v, key, format!("{n} is too large")))
    }

    /// A numeric key within `range` (the default when absent).
    pub(super) fn number<T>(
        &self,
        value: Option<&Spanned<T>>,
        key: &str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T>
    where
        T: PartialOrd + Copy + std::fmt::Display,
    {
        let Some(v) = value else {
            return Ok(default);
        };
        let number = *v.get_ref();
        // `contains` is false for NaN, so a NaN percentage is refused too.
        if !range.contains(&number) {
            return Err(self.at(
                v,
                key,
                format!(
                    "{number} is out of range: give {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(number)
    }

    /// A keyword key: the value `parse` maps its text to, the default when absent, else an
    /// error saying `"{text:?} is not {expected}"`.
    pub(super) fn keyword<T>(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let Some(v) = value else {
            return Ok(default);
        };
        parse(v.get_ref())
            .ok_or_else(|| self.at(v, key, format!("{:?} is not {expected}", v.get_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_through_their_text() {
        for text in ["250ms", "30s", "5m", "6h", "1d", "90m"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert!(parse_duration("-1s").is_err());
        assert!(
            parse_duration("1y")
                .unwrap_err()
                .contains("unknown duration unit")
        );
    }

    #[test]
    fn lines_are_one_based_and_clamped() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, 1000), 3);
    }
}
