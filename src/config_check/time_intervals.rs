//! Quiet hours as both the spec (`teams[].quiet_hours`) and router.yaml
//! (`teams.<name>.quiet_hours`) write them: a list of time intervals in Alertmanager's
//! `time_intervals` syntax, each checked part by part with the position of every bad value.

use marked_yaml::Node;

use super::{Checker, Obj};
use crate::time_interval::{self, TimeInterval};

const INTERVAL_KEYS: &[&str] = &[
    "times",
    "weekdays",
    "days_of_month",
    "months",
    "years",
    "location",
];
const TIME_KEYS: &[&str] = &["start_time", "end_time"];

impl Checker {
    /// `quiet_hours:` under `obj`: absent gives no quiet hours.
    pub(crate) fn quiet_hours(&mut self, obj: &Obj) -> Vec<TimeInterval> {
        let field = obj.path("quiet_hours");
        self.list(obj, "quiet_hours")
            .into_iter()
            .enumerate()
            .filter_map(|(index, node)| self.time_interval(node, &format!("{field}[{index}]")))
            .collect()
    }

    fn time_interval(&mut self, node: &Node, field: &str) -> Option<TimeInterval> {
        let obj = self.object(node, field, INTERVAL_KEYS)?;
        let mut ok = true;
        let mut location = "UTC".to_string();
        if let Some(node) = obj.get("location") {
            let (name, _) = self.string(node, &obj.path("location"))?;
            if TimeInterval::new(&name).is_ok() {
                location = name;
            } else {
                self.error(
                    node.span(),
                    &obj.path("location"),
                    format!("unknown time zone `{name}`"),
                    Some("use an IANA time zone name such as `Europe/Berlin`, `America/New_York` or `UTC`".into()),
                );
                ok = false;
            }
        }
        let mut interval = TimeInterval::new(&location).ok()?;
        for (index, item) in self.list(&obj, "times").into_iter().enumerate() {
            match self.clock_range(item, &format!("{}[{index}]", obj.path("times"))) {
                Some(range) => interval.times.push(range),
                None => ok = false,
            }
        }
        ok &= self.ranges(
            &obj,
            "weekdays",
            time_interval::parse_weekdays,
            &mut interval.weekdays,
        );
        ok &= self.ranges(
            &obj,
            "days_of_month",
            time_interval::parse_days_of_month,
            &mut interval.days_of_month,
        );
        ok &= self.ranges(
            &obj,
            "months",
            time_interval::parse_months,
            &mut interval.months,
        );
        ok &= self.ranges(
            &obj,
            "years",
            time_interval::parse_years,
            &mut interval.years,
        );
        if interval.times.is_empty()
            && interval.weekdays.is_empty()
            && interval.days_of_month.is_empty()
            && interval.months.is_empty()
            && interval.years.is_empty()
            && ok
        {
            self.error(
                node.span(),
                field,
                "a quiet-hours interval without times, weekdays, days, months or years is quiet all the time".into(),
                Some("give it e.g. `times: [{start_time: \"19:00\", end_time: \"24:00\"}]` and `weekdays: [\"monday:friday\"]`".into()),
            );
            return None;
        }
        ok.then_some(interval)
    }

    fn clock_range(&mut self, node: &Node, field: &str) -> Option<(u16, u16)> {
        let obj = self.object(node, field, TIME_KEYS)?;
        let clock = |checker: &mut Checker, key: &str| {
            let (text, _) = checker.required_string(&obj, key)?;
            match time_interval::parse_clock(&text) {
                Ok(minutes) => Some(minutes),
                Err(hint) => {
                    let span = obj.get(key).map_or(*obj.span(), |n| *n.span());
                    checker.error(
                        &span,
                        &obj.path(key),
                        format!("invalid time `{text}`"),
                        Some(hint),
                    );
                    None
                }
            }
        };
        let start = clock(self, "start_time");
        let end = clock(self, "end_time");
        let (start, end) = (start?, end?);
        if start >= end {
            self.error(
                node.span(),
                field,
                "`start_time` must come before `end_time`".into(),
                Some("an interval over midnight is two: `{start_time: \"19:00\", end_time: \"24:00\"}` and `{start_time: \"00:00\", end_time: \"07:00\"}`".into()),
            );
            return None;
        }
        Some((start, end))
    }

    /// The list `key` of `obj`, each item read by `parse`; whether every item was good.
    fn ranges<T>(
        &mut self,
        obj: &Obj,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
        into: &mut Vec<T>,
    ) -> bool {
        let mut ok = true;
        for (index, item) in self.list(obj, key).into_iter().enumerate() {
            let item_field = format!("{}[{index}]", obj.path(key));
            let Some((text, _)) = self.string(item, &item_field) else {
                ok = false;
                continue;
            };
            match parse(&text) {
                Ok(range) => into.push(range),
                Err(hint) => {
                    self.error(
                        item.span(),
                        &item_field,
                        format!("invalid {key} `{text}`"),
                        Some(hint),
                    );
                    ok = false;
                }
            }
        }
        ok
    }
}
