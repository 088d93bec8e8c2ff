//! Dates and times: the proleptic Gregorian calendar arithmetic (days ↔ year/month/day, no chrono),
//! [`PgTimestamp`] (the wire form, µs since 2000-01-01 UTC, used by pgoutput for commit times),
//! and parsing of the ISO text Postgres prints with `DateStyle=ISO` for `date`, `time`, `timetz`,
//! `timestamp` and `timestamptz`. A `timestamptz` in any offset (`+05:30`, `-08`, LMT's
//! `+05:53:28`) is normalised to UTC. BC dates become astronomical years, as ISO 8601 numbers
//! them (1 BC is year 0, 44 BC is year -43), so every finite value is one [`CivilDate`] and
//! writers need no second form; `infinity` and `-infinity` are their own variants. It does not
//! know time-zone names: Postgres prints numeric offsets only. Protects invariant #9: a
//! malformed or impossible date (`2026-02-30`) is a reason, never a panic or an overflow.

use std::fmt;

use super::digits::write_zero_padded;

/// Days from 1970-01-01 to 2000-01-01, the Postgres epoch.
const PG_EPOCH_UNIX_DAYS: i64 = 10_957;
const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const MICROS_PER_DAY: i64 = SECONDS_PER_DAY * MICROS_PER_SECOND;
/// Postgres years never need more digits than this (dates end at 5874897 AD); the limit keeps
/// all arithmetic far from overflow.
const MAX_YEAR_DIGITS: usize = 7;
/// Postgres limits UTC offsets to 15:59:59.
const MAX_OFFSET_HOURS: u32 = 15;

/// A calendar date in the proleptic Gregorian calendar (year 0 = 1 BC, as in ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    /// The astronomical year: 1 BC is 0, 44 BC is -43.
    pub year: i32,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
}

/// A date and a time of day with microseconds, without a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDateTime {
    /// The date.
    pub date: CivilDate,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
    /// 0–999 999.
    pub microsecond: u32,
}

/// A decoded `date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    /// A finite date, BC ones with their astronomical year (`0044-03-15 BC` is year -43).
    Civil(CivilDate),
    /// `infinity`.
    Infinity,
    /// `-infinity`.
    NegInfinity,
}

/// A decoded `timestamp` or `timestamptz` (the latter already converted to UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// A finite date and time, BC ones with their astronomical year; for `timestamptz`, in UTC.
    Civil(CivilDateTime),
    /// `infinity`.
    Infinity,
    /// `-infinity`.
    NegInfinity,
}

/// A Postgres timestamp on the wire: microseconds since 2000-01-01 00:00:00 UTC. `i64::MAX` and
/// `i64::MIN` are Postgres' `infinity` and `-infinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Microseconds between the Unix epoch and the Postgres epoch.
    pub const PG_EPOCH_UNIX_MICROS: i64 = PG_EPOCH_UNIX_DAYS * MICROS_PER_DAY;

    /// The current time.
    pub fn now() -> PgTimestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        PgTimestamp(micros.saturating_sub(Self::PG_EPOCH_UNIX_MICROS))
    }

    /// The wall-clock time, saturating before 1970.
    pub fn to_system_time(self) -> std::time::SystemTime {
        let micros = u64::try_from(self.to_unix_micros()).unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros)
    }

    /// Microseconds since 1970-01-01 UTC (saturating at the `i64` ends).
    pub fn to_unix_micros(self) -> i64 {
        self.0.saturating_add(Self::PG_EPOCH_UNIX_MICROS)
    }

    /// The UTC calendar time, or `None` for `infinity` / `-infinity`.
    pub fn to_civil(self) -> Option<CivilDateTime> {
        if self.0 == i64::MAX || self.0 == i64::MIN {
            return None;
        }
        let days = self.0.div_euclid(MICROS_PER_DAY) + PG_EPOCH_UNIX_DAYS;
        let micros_of_day = self.0.rem_euclid(MICROS_PER_DAY);
        Some(CivilDateTime::from_unix_days_and_micros(
            days,
            micros_of_day,
        ))
    }

    /// Appends ISO 8601 UTC (`2026-11-22T10:00:00.123456Z`; fraction omitted when zero, trailing
    /// zeros trimmed), or `infinity` / `-infinity`.
    pub fn write_iso8601(self, out: &mut Vec<u8>) {
        match self.to_civil() {
            Some(civil) => {
                civil.write_iso8601(out);
                out.push(b'Z');
            }
            None if self.0 == i64::MAX => out.extend_from_slice(b"infinity"),
            None => out.extend_from_slice(b"-infinity"),
        }
    }

    /// [`PgTimestamp::write_iso8601`] into a new `String`.
    pub fn to_iso8601(self) -> String {
        let mut out = Vec::with_capacity(32);
        self.write_iso8601(&mut out);
        // The writer emits ASCII only.
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for PgTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (`civil_from_days`). Callers pass
/// counts derived from at most [`MAX_YEAR_DIGITS`]-digit years or from an `i64` of microseconds,
/// so every intermediate stays far inside `i64`.
fn civil_from_days(days: i64) -> CivilDate {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    CivilDate {
        year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
        // Both are in range by construction (1..=12, 1..=31); the fallbacks are never taken.
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

#[inline]
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl CivilDate {
    /// Days since 1970-01-01.
    pub fn to_unix_days(self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }

    /// Appends `YYYY-MM-DD`; a year outside 0000..=9999 takes ISO 8601's expanded form, a sign
    /// and as many digits as it needs (`-0043-03-15` is 44 BC, `+10000-01-01`).
    pub fn write_iso8601(self, out: &mut Vec<u8>) {
        if self.year < 0 {
            out.push(b'-');
        } else if self.year > 9999 {
            out.push(b'+');
        }
        write_zero_padded(out, u64::from(self.year.unsigned_abs()), 4);
        out.push(b'-');
        write_zero_padded(out, u64::from(self.month), 2);
        out.push(b'-');
        write_zero_padded(out, u64::from(self.day), 2);
    }
}

impl CivilDateTime {
    #[inline]
    fn from_unix_days_and_micros(days: i64, micros_of_day: i64) -> Self {
        let seconds_of_day = micros_of_day / MICROS_PER_SECOND;
        // All four are in range by construction (micros_of_day is in 0..MICROS_PER_DAY).
        CivilDateTime {
            date: civil_from_days(days),
            hour: u8::try_from(seconds_of_day / 3600).unwrap_or(0),
            minute: u8::try_from(seconds_of_day / 60 % 60).unwrap_or(0),
            second: u8::try_from(seconds_of_day % 60).unwrap_or(0),
            microsecond: u32::try_from(micros_of_day % MICROS_PER_SECOND).unwrap_or(0),
        }
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS[.ffffff]` (no zone designator; fraction trimmed like
    /// Postgres prints it).
    pub fn write_iso8601(self, out: &mut Vec<u8>) {
        self.write_text(out, b'T', Fraction::Trimmed);
    }

    /// Appends `<date><separator>HH:MM:SS[.<fraction>]`, the date as in
    /// [`CivilDate::write_iso8601`]; a whole second has no fraction. ISO 8601 separates with `T`,
    /// SQL literals (StarRocks' DATETIME) with a space.
    pub fn write_text(self, out: &mut Vec<u8>, separator: u8, fraction: Fraction) {
        self.date.write_iso8601(out);
        out.push(separator);
        write_zero_padded(out, u64::from(self.hour), 2);
        out.push(b':');
        write_zero_padded(out, u64::from(self.minute), 2);
        out.push(b':');
        write_zero_padded(out, u64::from(self.second), 2);
        if self.microsecond != 0 {
            out.push(b'.');
            let mut digits = self.microsecond;
            let mut width = 6;
            if fraction == Fraction::Trimmed {
                while digits.is_multiple_of(10) {
                    digits /= 10;
                    width -= 1;
                }
            }
            write_zero_padded(out, u64::from(digits), width);
        }
    }
}

/// How [`CivilDateTime::write_text`] writes a fraction of a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// Trailing zeros dropped (`.5`), as Postgres prints it.
    Trimmed,
    /// Always six digits (`.500000`).
    Micros,
}

/// A cursor over ASCII text; every read is checked.
struct Scanner<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            bytes: text.as_bytes(),
            position: 0,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    #[inline]
    fn eat(&mut self, expected: u8) -> bool {
        let matched = self.peek() == Some(expected);
        if matched {
            self.position += 1;
        }
        matched
    }

    #[inline]
    fn expect(&mut self, expected: u8, reason: &'static str) -> Result<(), &'static str> {
        if self.eat(expected) {
            Ok(())
        } else {
            Err(reason)
        }
    }

    /// Between `min` and `max` ASCII digits as a number.
    #[inline]
    fn digits(
        &mut self,
        min: usize,
        max: usize,
        reason: &'static str,
    ) -> Result<u32, &'static str> {
        let mut value: u32 = 0;
        let mut count = 0;
        while count < max {
            match self.peek() {
                Some(byte @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(byte - b'0');
                    self.position += 1;
                    count += 1;
                }
                _ => break,
            }
        }
        if count < min {
            return Err(reason);
        }
        Ok(value)
    }

    #[inline]
    fn is_done(&self) -> bool {
        self.position >= self.bytes.len()
    }
}

/// `HH:MM:SS[.f{1,6}]` → (hour, minute, second, microsecond), hour up to 24.
#[inline]
fn scan_time(scanner: &mut Scanner<'_>) -> Result<(u32, u32, u32, u32), &'static str> {
    const MALFORMED: &str = "expected HH:MM:SS[.ffffff]";
    let hour = scanner.digits(2, 2, MALFORMED)?;
    scanner.expect(b':', MALFORMED)?;
    let minute = scanner.digits(2, 2, MALFORMED)?;
    scanner.expect(b':', MALFORMED)?;
    let second = scanner.digits(2, 2, MALFORMED)?;
    let mut microsecond = 0;
    if scanner.eat(b'.') {
        let start = scanner.position;
        let fraction = scanner.digits(1, 6, "expected 1 to 6 fractional digits")?;
        if matches!(scanner.peek(), Some(b'0'..=b'9')) {
            return Err("more than 6 fractional digits");
        }
        let width = scanner.position - start;
        microsecond = fraction * 10u32.pow(6 - width as u32);
    }
    if hour > 24 || minute > 59 || second > 59 {
        return Err("time field out of range");
    }
    if hour == 24 && (minute, second, microsecond) != (0, 0, 0) {
        return Err("time field out of range");
    }
    Ok((hour, minute, second, microsecond))
}

/// `±HH[:MM[:SS]]` or `Z` → offset east of UTC in seconds.
#[inline]
fn scan_utc_offset(scanner: &mut Scanner<'_>) -> Result<i64, &'static str> {
    const MALFORMED: &str = "expected a UTC offset like +00, +05:30 or -08";
    if scanner.eat(b'Z') {
        return Ok(0);
    }
    let sign: i64 = if scanner.eat(b'+') {
        1
    } else if scanner.eat(b'-') {
        -1
    } else {
        return Err(MALFORMED);
    };
    let hours = scanner.digits(2, 2, MALFORMED)?;
    let mut minutes = 0;
    let mut seconds = 0;
    if scanner.eat(b':') {
        minutes = scanner.digits(2, 2, MALFORMED)?;
        if scanner.eat(b':') {
            seconds = scanner.digits(2, 2, MALFORMED)?;
        }
    }
    if hours > MAX_OFFSET_HOURS || minutes > 59 || seconds > 59 {
        return Err("UTC offset out of range");
    }
    Ok(sign * i64::from(hours * 3600 + minutes * 60 + seconds))
}

/// `Y{4,7}-MM-DD` with a day that exists in that month. `before_common_era` makes the year BC:
/// the result holds its astronomical number (1 BC is 0, and a leap year).
#[inline]
fn scan_date(
    scanner: &mut Scanner<'_>,
    before_common_era: bool,
) -> Result<CivilDate, &'static str> {
    const MALFORMED: &str = "expected YYYY-MM-DD";
    let year = scanner.digits(4, MAX_YEAR_DIGITS, MALFORMED)?;
    if matches!(scanner.peek(), Some(b'0'..=b'9')) {
        return Err("year out of range");
    }
    scanner.expect(b'-', MALFORMED)?;
    let month = scanner.digits(2, 2, MALFORMED)?;
    scanner.expect(b'-', MALFORMED)?;
    let day = scanner.digits(2, 2, MALFORMED)?;
    if year == 0 {
        return Err("year 0 does not exist");
    }
    let astronomical_year = if before_common_era {
        1 - i64::from(year)
    } else {
        i64::from(year)
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(astronomical_year, month) {
        return Err("no such day in the calendar");
    }
    Ok(CivilDate {
        // At most 7 digits: fits in i32.
        year: i32::try_from(astronomical_year).unwrap_or(i32::MAX),
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
    })
}

/// Splits a trailing ` BC` off.
#[inline]
fn strip_before_common_era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

/// Parses a `date`: `YYYY-MM-DD`, `… BC`, `infinity`, `-infinity`.
#[inline]
pub(crate) fn parse_date(text: &str) -> Result<Date, &'static str> {
    match text {
        "infinity" => return Ok(Date::Infinity),
        "-infinity" => return Ok(Date::NegInfinity),
        _ => {}
    }
    let (body, before_common_era) = strip_before_common_era(text);
    let mut scanner = Scanner::new(body);
    let date = scan_date(&mut scanner, before_common_era)?;
    if !scanner.is_done() {
        return Err("unexpected text after the date");
    }
    Ok(Date::Civil(date))
}

/// Checks a `time`: `HH:MM:SS[.ffffff]`, `24:00:00` allowed.
#[inline]
pub(crate) fn parse_time_of_day(text: &str) -> Result<(), &'static str> {
    let mut scanner = Scanner::new(text);
    scan_time(&mut scanner)?;
    if !scanner.is_done() {
        return Err("unexpected text after the time");
    }
    Ok(())
}

/// Checks a `timetz`: a time followed by a UTC offset.
#[inline]
pub(crate) fn parse_time_with_zone(text: &str) -> Result<(), &'static str> {
    let mut scanner = Scanner::new(text);
    scan_time(&mut scanner)?;
    scan_utc_offset(&mut scanner)?;
    if !scanner.is_done() {
        return Err("unexpected text after the UTC offset");
    }
    Ok(())
}

/// Parses a `timestamp` (`with_zone == false`) or `timestamptz`: `YYYY-MM-DD HH:MM:SS[.f]`, then
/// for timestamptz a UTC offset (the result is converted to UTC), then an optional ` BC`.
#[inline]
pub(crate) fn parse_timestamp(text: &str, with_zone: bool) -> Result<Timestamp, &'static str> {
    match text {
        "infinity" => return Ok(Timestamp::Infinity),
        "-infinity" => return Ok(Timestamp::NegInfinity),
        _ => {}
    }
    let (body, before_common_era) = strip_before_common_era(text);
    let mut scanner = Scanner::new(body);
    let date = scan_date(&mut scanner, before_common_era)?;
    if !(scanner.eat(b' ') || scanner.eat(b'T')) {
        return Err("expected a space between date and time");
    }
    let (hour, minute, second, microsecond) = scan_time(&mut scanner)?;
    if hour == 24 {
        return Err("time field out of range");
    }
    let offset_seconds = if with_zone {
        scan_utc_offset(&mut scanner)?
    } else {
        0
    };
    if !scanner.is_done() {
        return Err("unexpected text after the time");
    }
    let local = CivilDateTime {
        date,
        // In range: checked by scan_time.
        hour: u8::try_from(hour).unwrap_or(0),
        minute: u8::try_from(minute).unwrap_or(0),
        second: u8::try_from(second).unwrap_or(0),
        microsecond,
    };
    if offset_seconds == 0 {
        return Ok(Timestamp::Civil(local));
    }
    let local_seconds =
        date.to_unix_days() * SECONDS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second);
    let utc_seconds = local_seconds - offset_seconds;
    Ok(Timestamp::Civil(CivilDateTime::from_unix_days_and_micros(
        utc_seconds.div_euclid(SECONDS_PER_DAY),
        utc_seconds.rem_euclid(SECONDS_PER_DAY) * MICROS_PER_SECOND + i64::from(microsecond),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(timestamp: Timestamp) -> String {
        match timestamp {
            Timestamp::Civil(civil) => {
                let mut out = Vec::new();
                civil.write_iso8601(&mut out);
                String::from_utf8(out).unwrap()
            }
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn calendar_round_trips_over_a_wide_range() {
        for days in (-1_000_000..1_000_000).step_by(97) {
            let date = civil_from_days(days);
            assert_eq!(date.to_unix_days(), days, "{date:?}");
        }
        assert_eq!(
            civil_from_days(0),
            CivilDate {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(days_from_civil(2000, 1, 1), PG_EPOCH_UNIX_DAYS);
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
    }

    #[test]
    fn pg_timestamp_formats_iso8601_utc() {
        // 2026-11-22T10:00:00.123456Z
        let days = days_from_civil(2026, 11, 22) - PG_EPOCH_UNIX_DAYS;
        let micros = days * MICROS_PER_DAY + 10 * 3600 * MICROS_PER_SECOND + 123_456;
        assert_eq!(
            PgTimestamp(micros).to_iso8601(),
            "2026-11-22T10:00:00.123456Z"
        );
        assert_eq!(PgTimestamp(0).to_iso8601(), "2000-01-01T00:00:00Z");
        assert_eq!(PgTimestamp(-1).to_iso8601(), "1999-12-31T23:59:59.999999Z");
        assert_eq!(PgTimestamp(500_000).to_string(), "2000-01-01T00:00:00.5Z");
        assert_eq!(PgTimestamp(i64::MAX).to_iso8601(), "infinity");
        assert_eq!(PgTimestamp(i64::MIN).to_iso8601(), "-infinity");
        assert_eq!(PgTimestamp(0).to_unix_micros(), 946_684_800_000_000);
        // The extremes do not panic.
        assert!(!PgTimestamp(i64::MAX - 1).to_iso8601().is_empty());
        assert!(!PgTimestamp(i64::MIN + 1).to_iso8601().is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("2026-11-22"),
            Ok(Date::Civil(CivilDate {
                year: 2026,
                month: 11,
                day: 22
            }))
        );
        assert_eq!(parse_date("2024-02-29").map(|_| ()), Ok(()));
        assert!(parse_date("2023-02-29").is_err());
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("2026-04-31").is_err());
        assert!(parse_date("0000-01-01").is_err());
        assert_eq!(
            parse_date("0044-03-15 BC"),
            Ok(Date::Civil(CivilDate {
                year: -43,
                month: 3,
                day: 15
            }))
        );
        // 1 BC is year 0, a leap year.
        assert_eq!(
            parse_date("0001-02-29 BC"),
            Ok(Date::Civil(CivilDate {
                year: 0,
                month: 2,
                day: 29
            }))
        );
        assert!(parse_date("0002-02-29 BC").is_err());
        assert_eq!(parse_date("infinity"), Ok(Date::Infinity));
        assert_eq!(parse_date("-infinity"), Ok(Date::NegInfinity));
        assert_eq!(
            parse_date("5874897-12-31"),
            Ok(Date::Civil(CivilDate {
                year: 5_874_897,
                month: 12,
                day: 31
            }))
        );
        for bad in [
            "",
            "2026-1-01",
            "2026/01/01",
            "2026-01-01x",
            "26-01-01",
            "12345678-01-01",
        ] {
            assert!(parse_date(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn times() {
        for good in ["00:00:00", "23:59:59.999999", "24:00:00", "10:00:00.5"] {
            assert!(parse_time_of_day(good).is_ok(), "{good}");
        }
        for bad in [
            "24:00:01",
            "10:60:00",
            "10:00",
            "10:00:00.",
            "10:00:00.1234567",
            "1:00:00",
        ] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
        for good in [
            "10:00:00+00",
            "10:00:00.25-08",
            "10:00:00+05:30",
            "10:00:00+05:53:28",
        ] {
            assert!(parse_time_with_zone(good).is_ok(), "{good}");
        }
        for bad in ["10:00:00", "10:00:00+5", "10:00:00+16", "10:00:00 +00"] {
            assert!(parse_time_with_zone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_without_zone_keep_their_wall_time() {
        let parsed = parse_timestamp("2026-11-22 10:00:00.123456", false).unwrap();
        assert_eq!(iso(parsed), "2026-11-22T10:00:00.123456");
        let parsed = parse_timestamp("2026-11-22 10:00:00.1", false).unwrap();
        assert_eq!(iso(parsed), "2026-11-22T10:00:00.1");
        assert!(parse_timestamp("2026-11-22 10:00:00+00", false).is_err());
        assert!(parse_timestamp("2026-11-22 24:00:00", false).is_err());
    }

    #[test]
    fn timestamptz_is_normalised_to_utc() {
        let cases = [
            (
                "2026-11-22 10:00:00.123456+00",
                "2026-11-22T10:00:00.123456",
            ),
            ("2026-11-22 10:00:00+05:30", "2026-11-22T04:30:00"),
            ("2026-11-22 20:00:00.5-08", "2026-11-23T04:00:00.5"),
            ("2024-03-01 01:00:00+02", "2024-02-29T23:00:00"),
            ("2026-01-01 00:00:00+00:00:30", "2025-12-31T23:59:30"),
            ("1900-01-01 00:00:00+05:53:28", "1899-12-31T18:06:32"),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                iso(parse_timestamp(text, true).unwrap()),
                expected,
                "{text}"
            );
        }
        assert_eq!(parse_timestamp("infinity", true), Ok(Timestamp::Infinity));
        assert_eq!(
            parse_timestamp("-infinity", true),
            Ok(Timestamp::NegInfinity)
        );
        assert_eq!(
            iso(parse_timestamp("0044-03-15 12:00:00+00 BC", true).unwrap()),
            "-0043-03-15T12:00:00"
        );
        // The offset applies across years: 1 BC-01-01 00:30 at +01 is 2 BC (year -1) in UTC.
        assert_eq!(
            iso(parse_timestamp("0001-01-01 00:30:00+01 BC", true).unwrap()),
            "-0001-12-31T23:30:00"
        );
        assert_eq!(
            iso(parse_timestamp("0001-12-31 23:00:00 BC", false).unwrap()),
            "0000-12-31T23:00:00"
        );
        assert!(parse_timestamp("2026-11-22 10:00:00", true).is_err());
        assert!(parse_timestamp("2026-11-22 10:00:00+00 AD", true).is_err());
    }

    #[test]
    fn extreme_years_format() {
        let mut out = Vec::new();
        CivilDate {
            year: 0,
            month: 12,
            day: 31,
        }
        .write_iso8601(&mut out);
        out.push(b' ');
        CivilDate {
            year: 294_276,
            month: 1,
            day: 1,
        }
        .write_iso8601(&mut out);
        out.push(b' ');
        CivilDate {
            year: -5,
            month: 1,
            day: 1,
        }
        .write_iso8601(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0000-12-31 +294276-01-01 -0005-01-01"
        );
        let first_ad = parse_timestamp("0001-01-01 00:30:00+05:30", true).unwrap();
        assert_eq!(iso(first_ad), "0000-12-31T19:00:00");
    }
}
