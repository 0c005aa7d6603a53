//! `stackgen slo status`: every service objective's target, budget left and burn rates, read
//! from a running Prometheus that evaluates the rendered `slos.yaml`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// What is read, by column: the objective, the budget left, the burn rates.
const QUERIES: [(&str, &str); 6] = [
    ("objective", "1 - stackgen:slo_error_budget:ratio"),
    ("budget_left", "stackgen:slo_error_budget:remaining"),
    ("burn_1h", "stackgen:slo_burn_rate:rate1h"),
    ("burn_6h", "stackgen:slo_burn_rate:rate6h"),
    ("burn_1d", "stackgen:slo_burn_rate:rate1d"),
    ("burn_3d", "stackgen:slo_burn_rate:rate3d"),
];

/// One objective of one service, with what Prometheus knows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub namespace: String,
    pub service: String,
    pub slo: String,
    pub figures: BTreeMap<&'static str, f64>,
}

/// The objectives in the answers to [`QUERIES`] (column, the `data.result` vector), optionally
/// only of `service` (`NAME` or `NAMESPACE/NAME`), sorted by namespace, service and kind.
pub fn statuses(answers: &[(&'static str, Value)], service: Option<&str>) -> Vec<Status> {
    let mut by_objective: BTreeMap<(String, String, String), BTreeMap<&'static str, f64>> =
        BTreeMap::new();
    for (column, result) in answers {
        for sample in result.as_array().into_iter().flatten() {
            let label = |name: &str| {
                sample["metric"][name]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            let key = (label("namespace"), label("service"), label("slo"));
            let value = sample["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(value) = value {
                by_objective.entry(key).or_default().insert(column, value);
            }
        }
    }
    by_objective
        .into_iter()
        .filter(|((namespace, name, _), _)| match service {
            None => true,
            Some(wanted) => wanted == name || wanted == format!("{namespace}/{name}"),
        })
        .map(|((namespace, service, slo), figures)| Status {
            namespace,
            service,
            slo,
            figures,
        })
        .collect()
}

/// A terminal table of `statuses`; a figure Prometheus has not computed yet is `-`.
pub fn table(statuses: &[Status]) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "SLO".into(),
        "OBJECTIVE".into(),
        "BUDGET LEFT".into(),
        "BURN 1h".into(),
        "6h".into(),
        "1d".into(),
        "3d".into(),
    ]];
    for status in statuses {
        let percent = |column: &str| {
            status
                .figures
                .get(column)
                .map_or("-".to_string(), |v| format!("{}%", trim(v * 100.0, 3)))
        };
        let times = |column: &str| {
            status
                .figures
                .get(column)
                .map_or("-".to_string(), |v| format!("{}x", trim(*v, 2)))
        };
        rows.push([
            format!("{}/{}", status.namespace, status.service),
            status.slo.clone(),
            percent("objective"),
            percent("budget_left"),
            times("burn_1h"),
            times("burn_6h"),
            times("burn_1d"),
            times("burn_3d"),
        ]);
    }
    // Label values come from Prometheus: a control character in one must not break the table.
    for cell in rows.iter_mut().flatten() {
        if cell.chars().any(char::is_control) {
            *cell = cell.escape_default().to_string();
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `value` with at most `decimals` decimals, no trailing zeros.
fn trim(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" { "0".into() } else { text }
}

/// The objectives as JSON: one object per objective, its figures by column.
pub fn json(statuses: &[Status]) -> Value {
    Value::Array(
        statuses
            .iter()
            .map(|s| {
                let mut object =
                    json!({"namespace": s.namespace, "service": s.service, "slo": s.slo});
                for (column, value) in &s.figures {
                    object[*column] = json!(value);
                }
                object
            })
            .collect(),
    )
}

/// Asks the Prometheus at `base` (`http://host:9090`) every query of [`QUERIES`].
pub fn query_all(base: &str) -> anyhow::Result<Vec<(&'static str, Value)>> {
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!(
            "--prometheus takes an http:// or https:// URL, like http://prometheus.monitoring.svc:9090"
        );
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build()
        .into();
    let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let mut answers = Vec::new();
    for (column, query) in QUERIES {
        let mut response = agent
            .get(&endpoint)
            .query("query", query)
            .call()
            .with_context(|| format!("asking {endpoint}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .with_context(|| format!("reading the answer of {endpoint}"))?;
        let body: Value = serde_json::from_str(&text).with_context(|| {
            format!("{endpoint} answered {status} with something other than Prometheus' JSON")
        })?;
        if body["status"] != "success" {
            bail!(
                "{endpoint} answered {status}: {}",
                body["error"].as_str().unwrap_or("no reason given")
            );
        }
        answers.push((column, body["data"]["result"].clone()));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(samples: &[(&str, &str, f64)]) -> Value {
        Value::Array(
            samples
                .iter()
                .map(|(service, slo, value)| {
                    json!({"metric": {"namespace": "shop", "service": service, "slo": slo}, "value": [0, value.to_string()]})
                })
                .collect(),
        )
    }

    #[test]
    fn objectives_join_their_figures_and_filter_by_service() {
        let answers = vec![
            (
                "objective",
                answer(&[
                    ("checkout", "availability", 0.999),
                    ("cart", "latency", 0.99),
                ]),
            ),
            ("budget_left", answer(&[("checkout", "availability", 0.5)])),
            ("burn_1h", answer(&[("checkout", "availability", 14.4)])),
        ];
        let all = statuses(&answers, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].service, "cart", "sorted");
        assert_eq!(all[1].figures["burn_1h"], 14.4);
        let one = statuses(&answers, Some("shop/checkout"));
        assert_eq!(one.len(), 1);
        assert_eq!(statuses(&answers, Some("checkout")), one);
        let text = table(&all);
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.starts_with("SERVICE"))
        );
        assert!(
            text.contains("shop/checkout  availability  99.9%      50%          14.4x"),
            "{text}"
        );
        assert!(
            text.contains("shop/cart      latency       99%        -"),
            "{text}"
        );
        assert_eq!(json(&one)[0]["budget_left"], 0.5);
        let hostile = vec![(
            "objective",
            answer(&[("a\nb\u{1b}[2J", "availability", 0.9)]),
        )];
        let text = table(&statuses(&hostile, None));
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("shop/a\\nb\\u{1b}[2J"), "{text}");
    }
}
