//! Time intervals in the shape of Alertmanager's `time_intervals`: times of day, weekdays, days of
//! the month, months and years, read in a time zone. A team's quiet hours are a list of them.
//!
//! Every part is optional (absent: any); an instant is covered when every present part matches.
//! Pure: the instant is an argument, the time zone database is jiff's (the system's, or the copy
//! built in when the system has none).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

/// Weekday names, Sunday first (Alertmanager's numbering).
const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// One time interval; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// Minutes of the day, `[start, end)`, `end` at most 1440 (`24:00`).
    pub times: Vec<(u16, u16)>,
    /// Inclusive ranges of weekdays, 0 = Sunday.
    pub weekdays: Vec<(u8, u8)>,
    /// Inclusive ranges of days of the month; negative counts from the month's end (-1: last).
    pub days_of_month: Vec<(i8, i8)>,
    /// Inclusive ranges of months, 1 = January.
    pub months: Vec<(u8, u8)>,
    pub years: Vec<(i32, i32)>,
    /// The IANA name of the time zone the parts are read in (`UTC` when none is given).
    pub location: String,
    zone: TimeZone,
}

impl TimeInterval {
    /// An interval read in `location` (an IANA time zone name such as `Europe/Berlin`).
    pub fn new(location: &str) -> Result<TimeInterval, String> {
        let zone = TimeZone::get(location).map_err(|_| {
            format!(
                "unknown time zone `{location}`: use an IANA name such as `Europe/Berlin` or `UTC`"
            )
        })?;
        Ok(TimeInterval {
            times: Vec::new(),
            weekdays: Vec::new(),
            days_of_month: Vec::new(),
            months: Vec::new(),
            years: Vec::new(),
            location: location.to_string(),
            zone,
        })
    }

    /// Whether the instant `at_ms` (milliseconds since the epoch) falls inside the interval.
    pub fn covers(&self, at_ms: i64) -> bool {
        let Ok(instant) = Timestamp::from_millisecond(at_ms) else {
            return false;
        };
        let local = instant.to_zoned(self.zone.clone());
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        let weekday = u8::try_from(local.weekday().to_sunday_zero_offset()).unwrap_or(0);
        let day = local.day();
        let from_end = day - local.days_in_month() - 1;
        let month = u8::try_from(local.month()).unwrap_or(0);
        let year = i32::from(local.year());
        let any = |empty: bool, matched: bool| empty || matched;
        any(
            self.times.is_empty(),
            self.times.iter().any(|(s, e)| (*s..*e).contains(&minute)),
        ) && any(
            self.weekdays.is_empty(),
            self.weekdays
                .iter()
                .any(|(s, e)| (*s..=*e).contains(&weekday)),
        ) && any(
            self.days_of_month.is_empty(),
            self.days_of_month.iter().any(|(s, e)| {
                let d = if *s < 0 { from_end } else { day };
                (*s..=*e).contains(&d)
            }),
        ) && any(
            self.months.is_empty(),
            self.months.iter().any(|(s, e)| (*s..=*e).contains(&month)),
        ) && any(
            self.years.is_empty(),
            self.years.iter().any(|(s, e)| (*s..=*e).contains(&year)),
        )
    }

    /// The interval in the configuration syntax it was read from (router.yaml, the spec).
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        let ranges =
            |items: Vec<String>| Value::Array(items.into_iter().map(Value::from).collect());
        if !self.times.is_empty() {
            let times = self
                .times
                .iter()
                .map(|(s, e)| json!({"start_time": clock(*s), "end_time": clock(*e)}))
                .collect();
            map.insert("times".into(), Value::Array(times));
        }
        let named = |names: &[&str], (s, e): (u8, u8), first: u8| {
            let name = |n: u8| names[usize::from(n - first)].to_string();
            if s == e {
                name(s)
            } else {
                format!("{}:{}", name(s), name(e))
            }
        };
        if !self.weekdays.is_empty() {
            let items = self
                .weekdays
                .iter()
                .map(|r| named(&WEEKDAYS, *r, 0))
                .collect();
            map.insert("weekdays".into(), ranges(items));
        }
        if !self.days_of_month.is_empty() {
            let items = self.days_of_month.iter().map(|r| span(*r)).collect();
            map.insert("days_of_month".into(), ranges(items));
        }
        if !self.months.is_empty() {
            let items = self.months.iter().map(|r| named(&MONTHS, *r, 1)).collect();
            map.insert("months".into(), ranges(items));
        }
        if !self.years.is_empty() {
            let items = self.years.iter().map(|r| span(*r)).collect();
            map.insert("years".into(), ranges(items));
        }
        map.insert("location".into(), Value::from(self.location.clone()));
        Value::Object(map)
    }
}

impl serde::Serialize for TimeInterval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn span<T: PartialEq + std::fmt::Display>((s, e): (T, T)) -> String {
    if s == e {
        s.to_string()
    } else {
        format!("{s}:{e}")
    }
}

/// `HH:MM` from `00:00` to `24:00`, as minutes of the day.
pub fn parse_clock(text: &str) -> Result<u16, String> {
    let hint = || format!("`{text}` is no time of day: write HH:MM, from 00:00 to 24:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(hint)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(hint());
    }
    let hours: u16 = hours.parse().map_err(|_| hint())?;
    let minutes: u16 = minutes.parse().map_err(|_| hint())?;
    if hours > 24 || minutes > 59 || (hours == 24 && minutes > 0) {
        return Err(hint());
    }
    Ok(hours * 60 + minutes)
}

/// `start:end` (or one value) with both ends read by `one`; the start may not be after the end.
fn parse_range<T: PartialOrd + Copy>(
    text: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let (start, end) = match text.split_once(':') {
        Some((start, end)) => (one(start.trim())?, one(end.trim())?),
        None => {
            let value = one(text.trim())?;
            (value, value)
        }
    };
    if start > end {
        return Err(format!("range `{text}` starts after it ends"));
    }
    Ok((start, end))
}

/// `monday`, `monday:friday` (inclusive), case-insensitive.
pub fn parse_weekdays(text: &str) -> Result<(u8, u8), String> {
    parse_range(text, |name| {
        WEEKDAYS
            .iter()
            .position(|w| w.eq_ignore_ascii_case(name))
            .and_then(|i| u8::try_from(i).ok())
            .ok_or_else(|| format!("unknown weekday `{name}`: write e.g. `monday:friday`"))
    })
}

/// `1`, `1:15`, `-1` (the last day), `-7:-1`; both ends of one sign.
pub fn parse_days_of_month(text: &str) -> Result<(i8, i8), String> {
    let (start, end) = parse_range(text, |day| {
        day.parse::<i8>()
            .ok()
            .filter(|d| *d != 0 && (-31..=31).contains(d))
            .ok_or_else(|| {
                format!("`{day}` is no day of the month: 1 to 31, or -1 (the last) to -31")
            })
    })?;
    if (start < 0) != (end < 0) {
        return Err(format!(
            "range `{text}` mixes days from the start and from the end of the month"
        ));
    }
    Ok((start, end))
}

/// `january`, `march:may`, `1:3`, case-insensitive.
pub fn parse_months(text: &str) -> Result<(u8, u8), String> {
    parse_range(text, |month| {
        MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(month))
            .and_then(|i| u8::try_from(i + 1).ok())
            .or_else(|| month.parse::<u8>().ok().filter(|m| (1..=12).contains(m)))
            .ok_or_else(|| format!("unknown month `{month}`: a name or 1 to 12"))
    })
}

/// `2026`, `2026:2027`.
pub fn parse_years(text: &str) -> Result<(i32, i32), String> {
    parse_range(text, |year| {
        year.parse::<i32>()
            .ok()
            .filter(|y| (1970..=9999).contains(y))
            .ok_or_else(|| format!("`{year}` is no year"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds since the epoch of an RFC 3339 instant.
    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("instant").as_millisecond()
    }

    fn nights_and_weekends() -> Vec<TimeInterval> {
        let mut nights = TimeInterval::new("Europe/Berlin").expect("zone");
        nights.times = vec![(0, 7 * 60), (19 * 60, 24 * 60)];
        nights.weekdays = vec![parse_weekdays("monday:friday").expect("weekdays")];
        let mut weekends = TimeInterval::new("Europe/Berlin").expect("zone");
        weekends.weekdays = vec![
            parse_weekdays("saturday").expect("one day"),
            parse_weekdays("Sunday").expect("case"),
        ];
        vec![nights, weekends]
    }

    fn quiet(intervals: &[TimeInterval], instant: &str) -> bool {
        intervals.iter().any(|i| i.covers(at(instant)))
    }

    #[test]
    fn quiet_hours_read_in_their_time_zone() {
        let quiet_hours = nights_and_weekends();
        // Tuesday 2026-12-01: 06:59 and 19:00 in Berlin (UTC+1) are quiet, 07:00 to 18:59 not.
        assert!(quiet(&quiet_hours, "2026-12-01T05:59:00Z"));
        assert!(!quiet(&quiet_hours, "2026-12-01T06:00:00Z"));
        assert!(!quiet(&quiet_hours, "2026-12-01T17:59:59Z"));
        assert!(quiet(&quiet_hours, "2026-12-01T18:00:00Z"));
        // Saturday all day.
        assert!(quiet(&quiet_hours, "2026-12-05T12:00:00Z"));
        // In summer Berlin is UTC+2: 07:00 there is 05:00 UTC.
        assert!(quiet(&quiet_hours, "2026-07-01T04:59:00Z"));
        assert!(!quiet(&quiet_hours, "2026-07-01T05:00:00Z"));
    }

    #[test]
    fn days_of_the_month_count_from_either_end() {
        let mut month_end = TimeInterval::new("UTC").expect("zone");
        month_end.days_of_month = vec![parse_days_of_month("-2:-1").expect("days")];
        assert!(month_end.covers(at("2026-02-27T10:00:00Z")));
        assert!(!month_end.covers(at("2026-02-26T10:00:00Z")));
        assert!(month_end.covers(at("2026-12-31T23:59:00Z")));
        let mut first = TimeInterval::new("UTC").expect("zone");
        first.days_of_month = vec![parse_days_of_month("1").expect("day")];
        first.months = vec![parse_months("january:march").expect("months")];
        first.years = vec![parse_years("2027").expect("year")];
        assert!(first.covers(at("2027-03-01T00:00:00Z")));
        assert!(!first.covers(at("2027-04-01T00:00:00Z")));
        assert!(!first.covers(at("2026-03-01T00:00:00Z")));
    }

    #[test]
    fn bad_parts_are_refused_with_the_reason() {
        assert!(parse_clock("7:00").is_err());
        assert!(parse_clock("24:01").is_err());
        assert_eq!(parse_clock("24:00"), Ok(1440));
        assert!(parse_weekdays("friday:monday").is_err());
        assert!(parse_weekdays("funday").is_err());
        assert!(parse_days_of_month("0").is_err());
        assert!(parse_days_of_month("-3:5").is_err());
        assert!(parse_months("13").is_err());
        assert!(TimeInterval::new("Mars/Olympus").is_err());
    }

    #[test]
    fn an_interval_writes_back_as_it_reads() {
        let interval = &nights_and_weekends()[0];
        assert_eq!(
            interval.to_value(),
            json!({"times": [{"start_time": "00:00", "end_time": "07:00"}, {"start_time": "19:00", "end_time": "24:00"}], "weekdays": ["monday:friday"], "location": "Europe/Berlin"})
        );
    }
}
