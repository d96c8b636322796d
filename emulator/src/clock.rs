//! Time: the emulator clock and the timestamp type every record uses.
//!
//! Records store [`Ts`], whole seconds since the Unix epoch in UTC. SuperOffice writes its
//! timestamps without an offset (`2026-03-05T14:22:10`) and uses `0001-01-01T00:00:00` for
//! dates that were never set; [`Ts::MIN`] is that value.
//!
//! The [`Clock`] is the wall clock plus an offset that `POST /__admin/clock` moves forward, so
//! tests can make tokens expire or soft-deleted rows age into the purge without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// A point in time with second precision, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

impl Ts {
    /// `0001-01-01T00:00:00`, what the real server sends for a date that was never set.
    pub const MIN: Ts = Ts(-62_135_596_800);

    /// Builds a timestamp from calendar parts (proleptic Gregorian, UTC).
    pub fn from_parts(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Ts {
        Ts(days_from_civil(y, mo, d) * DAY
            + i64::from(h) * 3600
            + i64::from(mi) * 60
            + i64::from(s))
    }

    /// True for [`Ts::MIN`] (a date that was never set).
    pub fn is_min(self) -> bool {
        self == Ts::MIN
    }

    /// The day number (days since 1970-01-01), used by day-precision comparisons.
    pub fn day(self) -> i64 {
        self.0.div_euclid(DAY)
    }

    /// Midnight of the same day.
    pub fn start_of_day(self) -> Ts {
        Ts(self.day() * DAY)
    }

    /// This timestamp plus `secs` seconds.
    pub fn plus(self, secs: i64) -> Ts {
        Ts(self.0 + secs)
    }

    /// `yyyy-MM-ddTHH:mm:ss`, without an offset.
    pub fn iso(self) -> String {
        let mut out = String::with_capacity(20);
        self.write_iso(&mut out, false);
        out
    }

    /// Appends `yyyy-MM-ddTHH:mm:ss` (plus `Z` when `utc_suffix`) to `out`.
    pub fn write_iso(self, out: &mut String, utc_suffix: bool) {
        let (y, mo, d) = civil_from_days(self.day());
        let secs = self.0.rem_euclid(DAY);
        let (h, mi, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let mut buf = [0u8; 19];
        let y = y.clamp(0, 9999) as u32;
        put2(&mut buf[0..2], y / 100);
        put2(&mut buf[2..4], y % 100);
        buf[4] = b'-';
        put2(&mut buf[5..7], mo);
        buf[7] = b'-';
        put2(&mut buf[8..10], d);
        buf[10] = b'T';
        put2(&mut buf[11..13], h as u32);
        buf[13] = b':';
        put2(&mut buf[14..16], mi as u32);
        buf[16] = b':';
        put2(&mut buf[17..19], s as u32);
        // The buffer holds ASCII digits and separators only.
        out.push_str(std::str::from_utf8(&buf).unwrap_or("0001-01-01T00:00:00"));
        if utc_suffix {
            out.push('Z');
        }
    }

    /// The HTTP-date form (`Wed, 21 Oct 2015 07:28:00 GMT`).
    pub fn http_date(self) -> String {
        let t = if self.0 >= 0 {
            UNIX_EPOCH + std::time::Duration::from_secs(self.0 as u64)
        } else {
            UNIX_EPOCH
        };
        httpdate::fmt_http_date(t)
    }

    /// Parses an HTTP-date header value.
    pub fn parse_http_date(s: &str) -> Option<Ts> {
        let t = httpdate::parse_http_date(s.trim()).ok()?;
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Ts(secs as i64))
    }

    /// Parses the date and date-time literals SuperOffice accepts: `2020-05-28`, `2021-1-1`,
    /// `2020-05-28T15:00:00`, with optional fraction and `Z`/offset, and `28.5.2020`.
    ///
    /// Offsets are applied, so the result is UTC. The second value tells whether the literal
    /// carried a time of day.
    pub fn parse_literal(s: &str) -> Option<(Ts, bool)> {
        let s = s.trim();
        if let Some((d, rest)) = split_dotted_date(s) {
            return parse_time_part(d, rest);
        }
        let (date, rest) = match s.find(['T', 't', ' ']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let mut parts = date.split('-');
        let y: i64 = parts.next()?.parse().ok()?;
        let mo: u32 = parts.next()?.parse().ok()?;
        let d: u32 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        parse_time_part(days_from_civil(y, mo, d), rest)
    }
}

fn split_dotted_date(s: &str) -> Option<(i64, Option<&str>)> {
    let (date, rest) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = date.split('.');
    let d: u32 = parts.next()?.parse().ok()?;
    let mo: u32 = parts.next()?.parse().ok()?;
    let y: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    Some((days_from_civil(y, mo, d), rest))
}

fn parse_time_part(days: i64, rest: Option<&str>) -> Option<(Ts, bool)> {
    let Some(rest) = rest.filter(|r| !r.is_empty()) else {
        return Some((Ts(days * DAY), false));
    };
    // Split off a zone designator: `Z`, `+hh:mm` or `-hh:mm`.
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (zh, zm) = z.split_once(':').unwrap_or((z, "0"));
        let off = zh.parse::<i64>().ok()? * 3600 + zm.parse::<i64>().ok()? * 60;
        (t, sign * off)
    } else {
        (rest, 0)
    };
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next().unwrap_or("0").parse().ok()?;
    let s_part = hms.next().unwrap_or("0");
    let s: i64 = s_part.split('.').next()?.parse().ok()?;
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some((Ts(days * DAY + h * 3600 + mi * 60 + s - offset_secs), true))
}

fn put2(buf: &mut [u8], v: u32) {
    buf[0] = b'0' + (v / 10 % 10) as u8;
    buf[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The emulator's notion of "now": the wall clock plus an adjustable offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// The current time, second precision.
    pub fn now(&self) -> Ts {
        Ts(wall_secs() + self.offset_secs.load(Ordering::Relaxed))
    }

    /// The current time with nanoseconds, for webhook `Timestamp` values.
    pub fn now_precise(&self) -> (Ts, u32) {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = d.as_secs() as i64 + self.offset_secs.load(Ordering::Relaxed);
        (Ts(secs), d.subsec_nanos())
    }

    /// Moves the clock forward (or back, for negative values) and returns the new time.
    pub fn advance(&self, secs: i64) -> Ts {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
        self.now()
    }

    /// The current offset from the wall clock, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::Relaxed)
    }
}

fn wall_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2025-05-14T10:48:07.8912039Z`: the webhook timestamp format (seven fractional digits).
pub fn webhook_timestamp(ts: Ts, nanos: u32) -> String {
    let mut s = ts.iso();
    s.push_str(&format!(".{:07}Z", nanos / 100));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = Ts::from_parts(2026, 3, 5, 14, 22, 10);
        assert_eq!(t.iso(), "2026-03-05T14:22:10");
        assert_eq!(Ts::parse_literal("2026-03-05T14:22:10"), Some((t, true)));
        assert_eq!(Ts::MIN.iso(), "0001-01-01T00:00:00");
        assert_eq!(
            Ts::parse_literal("0001-01-01T00:00:00").map(|p| p.0),
            Some(Ts::MIN)
        );
    }

    #[test]
    fn parses_short_and_dotted_dates() {
        let d = Ts::from_parts(2021, 1, 1, 0, 0, 0);
        assert_eq!(Ts::parse_literal("2021-1-1"), Some((d, false)));
        assert_eq!(Ts::parse_literal("1.1.2021"), Some((d, false)));
        assert_eq!(
            Ts::parse_literal("2021-01-01T02:00:00+02:00"),
            Some((d, true)),
            "offsets are applied"
        );
        assert_eq!(
            Ts::parse_literal("2021-01-01T00:00:00.123Z"),
            Some((d, true))
        );
        assert_eq!(Ts::parse_literal("2021-13-01"), None);
        assert_eq!(Ts::parse_literal("yesterday"), None);
    }

    #[test]
    fn http_dates_round_trip() {
        let t = Ts::from_parts(2015, 10, 21, 7, 28, 0);
        assert_eq!(t.http_date(), "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(
            Ts::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(t)
        );
    }

    #[test]
    fn day_arithmetic_handles_negative_times() {
        assert_eq!(Ts(-1).day(), -1);
        assert_eq!(Ts(0).day(), 0);
        assert_eq!(civil_from_days(days_from_civil(1, 1, 1)), (1, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn clock_advances() {
        let c = Clock::default();
        let before = c.now();
        let after = c.advance(3600);
        assert!(after.0 - before.0 >= 3600);
        assert_eq!(c.offset(), 3600);
        assert!(webhook_timestamp(Ts(0), 891_203_900).ends_with(".8912039Z"));
    }
}
