//! [`SoDateTime`]: the lenient date-time type used by every `date-time` field.
//!
//! SuperOffice sends date-times in several shapes: without an offset
//! (`2024-03-05T14:22:10`, the common case, in UTC or in the tenant's base time zone depending
//! on `SO-TimeZone`), with `Z`, with an offset (`+02:00`), with 0 to 7 fractional digits
//! (`.8912039`), and `0001-01-01T00:00:00` for "never set". `SoDateTime` accepts all of them,
//! remembers how the value was written so it serialises back the same way, and never guesses a
//! time zone silently: [`SoDateTime::to_utc`] says what it assumes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

/// A date-time as SuperOffice writes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SoDateTime {
    wall: NaiveDateTime,
    offset: Offset,
    fraction_digits: u8,
}

/// How the offset was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Offset {
    /// No offset.
    None,
    /// `Z`.
    Zulu,
    /// `±HH:MM`, in seconds east of UTC.
    Fixed(i32),
}

/// Why a string is not a date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SuperOffice date-time {input:?}: {reason}")]
pub struct ParseDateTimeError {
    input: String,
    reason: &'static str,
}

impl SoDateTime {
    /// `0001-01-01T00:00:00`, which SuperOffice uses for "never set".
    pub const UNSET: SoDateTime = SoDateTime {
        wall: UNSET_DATE.and_time(chrono::NaiveTime::MIN),
        offset: Offset::None,
        fraction_digits: 0,
    };

    /// An offset-less value (the shape SuperOffice itself sends).
    pub fn from_naive(wall: NaiveDateTime) -> Self {
        let fraction_digits = fraction_digits_for(wall.nanosecond());
        SoDateTime {
            wall,
            offset: Offset::None,
            fraction_digits,
        }
    }

    /// A UTC instant, written with `Z`.
    pub fn from_utc(instant: DateTime<Utc>) -> Self {
        let wall = instant.naive_utc();
        SoDateTime {
            wall,
            offset: Offset::Zulu,
            fraction_digits: fraction_digits_for(wall.nanosecond()),
        }
    }

    /// True for `0001-01-01T00:00:00` ("never set").
    pub fn is_unset(&self) -> bool {
        self.wall.date() == UNSET_DATE && self.wall.time() == chrono::NaiveTime::MIN
    }

    /// `None` when [unset](Self::is_unset), else the value.
    pub fn set(self) -> Option<Self> {
        (!self.is_unset()).then_some(self)
    }

    /// The wall-clock time exactly as written (no offset applied).
    pub fn naive(&self) -> NaiveDateTime {
        self.wall
    }

    /// The offset, if the value carried one (`Z` is `+00:00`).
    pub fn offset(&self) -> Option<FixedOffset> {
        match self.offset {
            Offset::None => None,
            Offset::Zulu => FixedOffset::east_opt(0),
            Offset::Fixed(seconds) => FixedOffset::east_opt(seconds),
        }
    }

    /// The instant in UTC. A value without offset is taken as UTC, which is what SuperOffice's
    /// entity docs state (send `SO-TimeZone` to make the server say so explicitly).
    pub fn to_utc(&self) -> DateTime<Utc> {
        self.to_utc_assuming(FixedOffset::east_opt(0).expect("zero is a valid offset"))
    }

    /// The instant in UTC, reading an offset-less value in the given offset (e.g. the tenant's
    /// base time zone when the server sends local times).
    pub fn to_utc_assuming(&self, offset_less: FixedOffset) -> DateTime<Utc> {
        let offset = self.offset().unwrap_or(offset_less);
        offset
            .from_local_datetime(&self.wall)
            .single()
            .map(|dt| dt.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&self.wall))
    }
}

const UNSET_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(date) => date,
    None => panic!("0001-01-01 is a valid date"),
};

fn fraction_digits_for(nanos: u32) -> u8 {
    if nanos == 0 {
        0
    } else if nanos.is_multiple_of(1_000_000) {
        3
    } else if nanos.is_multiple_of(1_000) {
        6
    } else {
        9
    }
}

impl From<DateTime<Utc>> for SoDateTime {
    fn from(instant: DateTime<Utc>) -> Self {
        SoDateTime::from_utc(instant)
    }
}

impl From<NaiveDateTime> for SoDateTime {
    fn from(wall: NaiveDateTime) -> Self {
        SoDateTime::from_naive(wall)
    }
}

impl FromStr for SoDateTime {
    type Err = ParseDateTimeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDateTimeError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        let bytes = s.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = s.get(range)?;
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(err("expected YYYY-MM-DD"));
        }
        let (year, month, day) = (
            digits(0..4).ok_or_else(|| err("bad year"))?,
            digits(5..7).ok_or_else(|| err("bad month"))?,
            digits(8..10).ok_or_else(|| err("bad day"))?,
        );
        let date =
            NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| err("no such date"))?;
        if bytes.len() == 10 {
            return Ok(SoDateTime {
                wall: date.and_time(chrono::NaiveTime::MIN),
                offset: Offset::None,
                fraction_digits: 0,
            });
        }
        if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.len() < 16 || bytes[13] != b':' {
            return Err(err("expected THH:MM[:SS]"));
        }
        let hour = digits(11..13).ok_or_else(|| err("bad hour"))?;
        let minute = digits(14..16).ok_or_else(|| err("bad minute"))?;
        let mut pos = 16;
        let mut second = 0;
        if bytes.get(pos) == Some(&b':') {
            second = digits(17..19).ok_or_else(|| err("bad second"))?;
            pos = 19;
        }
        let mut nanos = 0u32;
        let mut fraction_digits = 0u8;
        if bytes.get(pos) == Some(&b'.') {
            let start = pos + 1;
            let end = start
                + bytes[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
            let count = end - start;
            if count == 0 || count > 9 {
                return Err(err("fraction must have 1 to 9 digits"));
            }
            let value: u32 = s[start..end].parse().map_err(|_| err("bad fraction"))?;
            nanos = value * 10u32.pow(9 - count as u32);
            fraction_digits = count as u8;
            pos = end;
        }
        let offset = match &s[pos..] {
            "" => Offset::None,
            "Z" | "z" => Offset::Zulu,
            rest => {
                let sign = match rest.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return Err(err("unexpected text after the time")),
                };
                let body = rest[1..].replace(':', "");
                if body.len() != 4 || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("offset must be ±HH:MM"));
                }
                let hours: i32 = body[..2].parse().map_err(|_| err("bad offset"))?;
                let minutes: i32 = body[2..].parse().map_err(|_| err("bad offset"))?;
                if hours > 23 || minutes > 59 {
                    return Err(err("offset out of range"));
                }
                Offset::Fixed(sign * (hours * 3600 + minutes * 60))
            }
        };
        let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
            .ok_or_else(|| err("no such time"))?;
        Ok(SoDateTime {
            wall: date.and_time(time),
            offset,
            fraction_digits,
        })
    }
}

impl fmt::Display for SoDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.wall;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            w.year(),
            w.month(),
            w.day(),
            w.hour(),
            w.minute(),
            w.second()
        )?;
        if self.fraction_digits > 0 {
            let digits = u32::from(self.fraction_digits);
            let value = w.nanosecond() / 10u32.pow(9 - digits);
            write!(f, ".{value:0width$}", width = digits as usize)?;
        }
        match self.offset {
            Offset::None => Ok(()),
            Offset::Zulu => f.write_str("Z"),
            Offset::Fixed(seconds) => {
                let sign = if seconds < 0 { '-' } else { '+' };
                let abs = seconds.abs();
                write!(f, "{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60)
            }
        }
    }
}

impl fmt::Debug for SoDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoDateTime({self})")
    }
}

impl serde::Serialize for SoDateTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SoDateTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> SoDateTime {
        let parsed: SoDateTime = s.parse().unwrap();
        assert_eq!(parsed.to_string(), s, "round trip of {s}");
        parsed
    }

    #[test]
    fn accepts_every_shape_superoffice_sends() {
        let plain = round_trip("2024-03-05T14:22:10");
        assert_eq!(plain.offset(), None);
        assert_eq!(plain.to_utc().to_rfc3339(), "2024-03-05T14:22:10+00:00");
        let zulu = round_trip("2025-05-14T10:48:07.8912039Z");
        assert_eq!(zulu.naive().nanosecond(), 891_203_900);
        let offset = round_trip("2025-05-14T10:48:07.89+02:00");
        assert_eq!(
            offset.to_utc().to_rfc3339(),
            "2025-05-14T08:48:07.890+00:00"
        );
        round_trip("2024-03-05T14:22:10.547");
        round_trip("2024-03-05T14:22:10.1");
        round_trip("2024-03-05T14:22:10-05:30");
    }

    #[test]
    fn unset_is_recognised() {
        let unset = round_trip("0001-01-01T00:00:00");
        assert!(unset.is_unset());
        assert_eq!(unset, SoDateTime::UNSET);
        assert_eq!(unset.set(), None);
        assert!(round_trip("2024-01-01T00:00:00").set().is_some());
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00",
            "2024-01-01T25:00:00",
            "2024-01-01T10:00:00+2",
            "2024-01-01T10:00:00.1234567890",
        ] {
            let err = bad.parse::<SoDateTime>().unwrap_err();
            assert!(
                err.to_string().contains("invalid SuperOffice date-time"),
                "{err}"
            );
        }
    }

    #[test]
    fn date_only_and_offset_conversion() {
        let date: SoDateTime = "2024-03-05".parse().unwrap();
        assert_eq!(date.naive().hour(), 0);
        let local: SoDateTime = "2024-03-05T12:00:00".parse().unwrap();
        let oslo = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(
            local.to_utc_assuming(oslo).to_rfc3339(),
            "2024-03-05T11:00:00+00:00"
        );
        let utc = Utc.with_ymd_and_hms(2024, 3, 5, 12, 0, 0).unwrap();
        assert_eq!(SoDateTime::from(utc).to_string(), "2024-03-05T12:00:00Z");
    }

    #[test]
    fn serde_uses_the_wire_string() {
        let value: SoDateTime = serde_json::from_str("\"2024-03-05T14:22:10\"").unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            "\"2024-03-05T14:22:10\""
        );
        assert!(serde_json::from_str::<SoDateTime>("42").is_err());
    }
}
