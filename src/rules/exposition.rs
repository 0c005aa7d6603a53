//! Metric names from a Prometheus text exposition (parsed with `prometheus-parse`), so the linter
//! and the dashboard tests can tell a typo'd metric from a real one.

use std::collections::BTreeSet;

use prometheus_parse::{Scrape, Value};

/// Series names that Prometheus makes itself for every target or rule.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Every series name an exposition produces (histograms and summaries with their
/// `_bucket`/`_sum`/`_count` series).
pub fn metric_names(text: &str) -> Result<BTreeSet<String>, String> {
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(|e| e.to_string())?;
    let mut names = BTreeSet::new();
    for sample in &scrape.samples {
        let base = sample.metric.trim_end_matches("_bucket").to_string();
        match sample.value {
            Value::Histogram(_) => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{base}{suffix}"));
                }
            }
            Value::Summary(_) => {
                names.insert(sample.metric.clone());
                names.insert(format!("{}_sum", sample.metric));
                names.insert(format!("{}_count", sample.metric));
            }
            _ => {
                names.insert(sample.metric.clone());
            }
        }
    }
    if names.is_empty() {
        return Err("no samples found; is this a Prometheus text exposition (/metrics)?".into());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_give_their_series_names() {
        let text = "# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"0.1\"} 1\nreq_seconds_bucket{le=\"+Inf\"} 2\nreq_seconds_sum 0.3\nreq_seconds_count 2\n# TYPE hits_total counter\nhits_total{code=\"200\"} 5\n";
        let names = metric_names(text).expect("parses");
        for n in [
            "req_seconds_bucket",
            "req_seconds_sum",
            "req_seconds_count",
            "hits_total",
        ] {
            assert!(names.contains(n), "{n} missing from {names:?}");
        }
        assert!(metric_names("").is_err());
    }
}
