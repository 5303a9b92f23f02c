//! An instant in UTC with millisecond precision, written as RFC 3339 (and as the zone-less form
//! JUnit's schema wants), with the civil-calendar arithmetic done here rather than by a date crate.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_DAY: i64 = 86_400 * MS_PER_SECOND;
/// 0000-01-01T00:00:00.000Z: RFC 3339 writes exactly four digits of year.
const MIN_MILLIS: i64 = days_from_civil(0, 1, 1) * MS_PER_DAY;
/// 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: i64 = days_from_civil(10_000, 1, 1) * MS_PER_DAY - 1;

/// An instant, as milliseconds since 1970-01-01T00:00:00Z, within the years 0000..=9999.
///
/// The range is checked by the constructors, so every `Timestamp` renders as a valid RFC 3339
/// date-time. Times come from the caller (this crate reads no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch, if its year is within 0000..=9999.
    pub fn from_unix_millis(millis: i64) -> Option<Timestamp> {
        (MIN_MILLIS..=MAX_MILLIS)
            .contains(&millis)
            .then_some(Timestamp(millis))
    }

    /// The instant a `SystemTime` names, truncated to the millisecond. A clock set outside the
    /// years 0000..=9999 is clamped: a report is still worth writing.
    pub fn from_system_time(time: SystemTime) -> Timestamp {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            // Before the epoch: round towards the past, as for positive times.
            Err(before) => {
                let ms = before.duration().as_nanos().div_ceil(1_000_000);
                i64::try_from(ms).map_or(i64::MIN, |ms| -ms)
            }
        };
        Timestamp(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with milliseconds: `2026-11-29T01:02:03.456Z`.
    pub fn rfc3339(self) -> String {
        let c = Civil::of(self);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
        )
    }

    /// ISO 8601 in UTC to the second with no zone suffix: `2026-11-29T01:02:03`. The common
    /// JUnit schema types `testsuite/@timestamp` so, and says the zone may not be given.
    pub fn utc_without_zone(self) -> String {
        let c = Civil::of(self);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )
    }

    /// Read an RFC 3339 date-time (`Z` or a numeric offset; a fraction is truncated to
    /// milliseconds).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, ParseTimestampError> {
        parse(text.as_bytes()).ok_or_else(|| ParseTimestampError(text.to_owned()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Timestamp, ParseTimestampError> {
        Timestamp::parse_rfc3339(s)
    }
}

/// A text that is not an RFC 3339 date-time in the years 0000..=9999.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTimestampError(String);

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an RFC 3339 date-time such as 2026-11-29T01:02:03.456Z",
            self.0
        )
    }
}

impl std::error::Error for ParseTimestampError {}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// A timestamp taken apart into calendar fields (proleptic Gregorian, UTC).
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
}

impl Civil {
    fn of(t: Timestamp) -> Civil {
        let days = t.0.div_euclid(MS_PER_DAY);
        let in_day = t.0.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1_000 % 60,
            milli: in_day % 1_000,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
/// Counting years from March puts the leap day last, so a 400-year era is 146 097 days and a
/// year's day is a linear function of its shifted month.
const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = (month as i64 + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468; // from 0000-03-01
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = era * 400 + year_of_era + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn parse(b: &[u8]) -> Option<Timestamp> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0_i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let year = digits(0..4)?;
    let month = u32::try_from(digits(5..7)?).ok()?;
    let day = u32::try_from(digits(8..10)?).ok()?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    // A leap second (:60) has no place in Unix time; our own reports never write one.
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut milli = 0;
    if at(i, b".") {
        let start = i + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start {
            return None;
        }
        // Milliseconds from the first three digits; further digits are truncated.
        let scale = [100, 10, 1];
        milli = b[start..end]
            .iter()
            .zip(scale)
            .map(|(d, s)| i64::from(d - b'0') * s)
            .sum();
        i = end;
    }
    let offset_minutes = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && at(i + 3, b":") => {
            let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month, day) * MS_PER_DAY
        + ((hour * 60 + minute) * 60 + second) * MS_PER_SECOND
        + milli;
    Timestamp::from_unix_millis(local - offset_minutes * 60 * MS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis).unwrap()
    }

    #[test]
    fn known_instants_render_as_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"), // leap day of a 400-year leap year
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"), // ordinary leap year
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (4_107_456_000_000, "2100-02-28T00:00:00.000Z"), // 2100 is not a leap year …
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"), // … so March follows Feb 28
            (1_798_761_599_999, "2026-12-31T23:59:59.999Z"),
            (1_798_761_600_000, "2027-01-01T00:00:00.000Z"),
            (1_795_914_123_456, "2026-11-29T01:02:03.456Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for (millis, text) in cases {
            assert_eq!(at(millis).rfc3339(), text, "{millis}");
            assert_eq!(at(millis).to_string(), text);
            assert_eq!(Timestamp::parse_rfc3339(text), Ok(at(millis)), "{text}");
        }
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        // 1600-03-01 to 2400-03-01 crosses leap centuries both ways.
        let (start, end) = (days_from_civil(1600, 3, 1), days_from_civil(2400, 3, 1));
        let mut expected = (1600, 3, 1);
        for days in start..end {
            assert_eq!(civil_from_days(days), expected, "{days}");
            let (y, m, d) = expected;
            assert_eq!(days_from_civil(y, m, d), days);
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn leap_years() {
        assert!(is_leap(2000) && is_leap(2024) && is_leap(1600));
        assert!(!is_leap(1900) && !is_leap(2100) && !is_leap(2026));
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
        assert!(Timestamp::parse_rfc3339("2026-02-29T00:00:00Z").is_err());
        assert!(Timestamp::parse_rfc3339("1900-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn junit_form_has_no_zone_and_no_fraction() {
        assert_eq!(
            at(1_795_914_123_456).utc_without_zone(),
            "2026-11-29T01:02:03"
        );
        assert_eq!(at(-1).utc_without_zone(), "1969-12-31T23:59:59");
    }

    #[test]
    fn parse_accepts_offsets_and_truncates_fractions() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).map(Timestamp::unix_millis);
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("1970-01-01t00:00:00.5z"), Ok(500));
        assert_eq!(t("1970-01-01T00:00:00.123987654Z"), Ok(123));
        assert_eq!(t("1970-01-01T02:00:00+02:00"), Ok(0));
        assert_eq!(t("1969-12-31T19:30:00-04:30"), Ok(0));
    }

    #[test]
    fn parse_rejects_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-11-29",
            "2026-11-29T01:02:03",
            "2026-11-29 01:02:03Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T23:60:00Z",
            "2026-11-29T23:59:60Z",
            "2026-11-29T01:02:03.Z",
            "2026-11-29T01:02:03+0100",
            "2026-11-29T01:02:03Zjunk",
            "+2026-11-29T01:02:03Z",
            "0000-01-01T00:00:00+00:01",
        ] {
            let err = Timestamp::parse_rfc3339(bad).unwrap_err();
            assert!(err.to_string().contains("RFC 3339"), "{err}");
        }
    }

    #[test]
    fn range_is_the_four_digit_years() {
        assert!(Timestamp::from_unix_millis(MIN_MILLIS - 1).is_none());
        assert!(Timestamp::from_unix_millis(MAX_MILLIS + 1).is_none());
        assert!(Timestamp::from_unix_millis(i64::MIN).is_none());
    }

    #[test]
    fn system_time_is_truncated_towards_the_past() {
        let after = UNIX_EPOCH + Duration::from_micros(1_500);
        assert_eq!(Timestamp::from_system_time(after).unix_millis(), 1);
        let before = UNIX_EPOCH - Duration::from_micros(1_500);
        assert_eq!(Timestamp::from_system_time(before).unix_millis(), -2);
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(Timestamp::from_system_time(far).unix_millis(), MAX_MILLIS);
    }

    #[test]
    fn serde_uses_the_rfc3339_text() {
        let t = at(1_795_914_123_456);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-29T01:02:03.456Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
