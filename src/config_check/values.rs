//! Checks and parsers for the scalar value kinds stackgen's files use: Prometheus durations, Kubernetes
//! quantities, Kubernetes names, label keys and values, ports, e-mail addresses.
//!
//! Each parser returns `Err(hint)` with a sentence that tells the user what a valid value looks like.

/// A Prometheus duration such as `15d`, `1h30m` or `90s`: units y, w, d, h, m, s, ms, largest first.
pub fn check_duration(text: &str) -> Result<(), String> {
    parse_duration_ms(text).map(|_| ())
}

/// The longest scrape interval the default rules work with: their rates take 5-minute windows,
/// which need four samples.
pub const MAX_SCRAPE_INTERVAL_MS: u64 = 75_000;

/// A scrape interval: a duration from 1s to [`MAX_SCRAPE_INTERVAL_MS`].
pub fn check_scrape_interval(text: &str) -> Result<(), String> {
    let ms = parse_duration_ms(text)?;
    if !(1_000..=MAX_SCRAPE_INTERVAL_MS).contains(&ms) {
        return Err(format!(
            "scrape between every 1s and every {}s: the default rules take rates over 5-minute windows, which need four samples (the default is 30s)",
            MAX_SCRAPE_INTERVAL_MS / 1000
        ));
    }
    Ok(())
}

/// Like [`check_duration`], returning the duration in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    const UNITS: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let hint = || {
        "a duration is a number with a unit, largest first: 15d, 12h, 1h30m, 90s (units: y w d h m s ms)"
            .to_string()
    };
    if text.is_empty() {
        return Err(hint());
    }
    const UNIT_MS: [u64; 7] = [
        365 * 86_400_000,
        7 * 86_400_000,
        86_400_000,
        3_600_000,
        60_000,
        1_000,
        1,
    ];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(hint());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| hint())?;
        rest = &rest[digits..];
        // `ms` must be tried before `m`.
        let unit = UNITS
            .iter()
            .enumerate()
            .filter(|(_, u)| rest.starts_with(**u))
            .max_by_key(|(_, u)| u.len());
        let Some((index, unit)) = unit else {
            return Err(hint());
        };
        if index < next_unit {
            return Err(hint());
        }
        next_unit = index + 1;
        rest = &rest[unit.len()..];
        total = number
            .checked_mul(UNIT_MS[index])
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(hint)?;
    }
    Ok(total)
}

/// A Kubernetes quantity (`500m`, `2`, `1.5Gi`, `512Mi`, `10G`), returned as its value in base units.
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let hint = || {
        "a Kubernetes quantity is a number with an optional suffix: 500m, 2, 512Mi, 1.5Gi, 10G"
            .to_string()
    };
    let number_len = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(number_len);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(hint());
    }
    let value: f64 = number.parse().map_err(|_| hint())?;
    let multiplier = if suffix.is_empty() {
        1.0
    } else {
        SUFFIXES
            .iter()
            .find(|(s, _)| *s == suffix)
            .map(|(_, m)| *m)
            .ok_or_else(hint)?
    };
    Ok(value * multiplier)
}

/// A DNS-1123 label: namespaces, Services, teams and most object names.
pub fn check_dns_label(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// A DNS-1123 subdomain: Secret names, ingress hosts, storage class names.
pub fn check_dns_subdomain(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|part| check_dns_label(part).is_ok());
    if ok {
        Ok(())
    } else {
        Err("use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (at most 253 characters)".into())
    }
}

/// A server host name (`smtp.example.com`, any case) or an IP address (`10.0.0.5`, `::1`).
pub fn check_host(text: &str) -> Result<(), String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if text.len() <= 253 && text.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("a host is a DNS name (letters, digits, '-' and '.') or an IP address".into())
    }
}

/// A key inside a Secret or ConfigMap.
pub fn check_secret_key(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err("a Secret key uses letters, digits, '-', '_' and '.'".into())
    }
}

/// A Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
pub fn check_label_key(text: &str) -> Result<(), String> {
    let (prefix, name) = match text.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    let prefix_ok = prefix.is_none_or(|p| check_dns_subdomain(p).is_ok());
    if prefix_ok && label_name_ok(name, false) {
        Ok(())
    } else {
        Err("a label key is an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into())
    }
}

/// A Kubernetes label value (may be empty).
pub fn check_label_value(text: &str) -> Result<(), String> {
    if label_name_ok(text, true) {
        Ok(())
    } else {
        Err("a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into())
    }
}

fn label_name_ok(text: &str, may_be_empty: bool) -> bool {
    if text.is_empty() {
        return may_be_empty;
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge_ok(text.chars().next())
        && edge_ok(text.chars().last())
}

/// A container port name (IANA service name): at most 15 lowercase letters, digits and '-', with a letter.
pub fn check_port_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 15
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.chars().any(|c| c.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if ok {
        Ok(())
    } else {
        Err("a port is a number from 1 to 65535 or a container port name of at most 15 lowercase letters, digits and '-'".into())
    }
}

/// An e-mail address, checked loosely (one `@`, a dot in the domain, no spaces).
pub fn check_email(text: &str) -> Result<(), String> {
    let ok = text.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
    }) && !text.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err("write an address like oncall@example.com".into())
    }
}

/// An absolute `http`/`https` URL a service is pinged at (a dead man's switch), with a host and
/// no user or password in it.
pub fn check_ping_url(text: &str) -> Result<(), String> {
    check_absolute_url(
        text,
        "write an absolute URL like https://hc-ping.com/<uuid>",
        "a ping URL carries no user or password; use the service's token URL",
    )
}

/// An absolute `http`/`https` URL with a host and no user or password in it (credentials are
/// given by Secret reference, never in a URL a spec holds).
pub fn check_http_url(text: &str) -> Result<(), String> {
    check_absolute_url(
        text,
        "write an absolute URL like https://metrics.example.com/api/v1/push",
        "a URL here carries no user or password; give credentials by Secret reference",
    )
}

/// An absolute `http`/`https` URL with a host and no credentials; `hint` says what to write,
/// `no_credentials` why a user or password is refused.
fn check_absolute_url(text: &str, hint: &str, no_credentials: &str) -> Result<(), String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("a URL has no spaces or control characters; {hint}"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e}); {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(hint.into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(no_credentials.into());
    }
    Ok(())
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn check_prometheus_label(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("a label name is letters, digits and '_', not starting with a digit".into())
    }
}

/// An objective in percent of good requests: a decimal number above 0 and below 100 with at
/// most 6 decimals (`99.9`).
pub fn check_objective(text: &str) -> Result<(), String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let decimal = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 6
        && !(text.contains('.') && fraction.is_empty());
    match text.parse::<f64>() {
        Ok(v) if decimal && v > 0.0 && v < 100.0 => Ok(()),
        Ok(v) if decimal && v >= 100.0 => Err("an objective is a percent below 100 (100 leaves no error budget to alert on), like 99.9".into()),
        _ => Err("write the objective as a percent with at most 6 decimals, like 99.9".into()),
    }
}

/// An SLO window: a Prometheus duration from 1d to 90d.
pub fn check_slo_window(text: &str) -> Result<(), String> {
    check_duration(text)?;
    let ms = parse_duration_ms(text)?;
    if (86_400_000..=90 * 86_400_000).contains(&ms) {
        Ok(())
    } else {
        Err("an SLO window is from 1d to 90d, like 30d or 4w".into())
    }
}

/// A request rate per second: a number of at least 0 (`1`, `0.05`).
pub fn check_request_rate(text: &str) -> Result<(), String> {
    match text.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() && !text.starts_with('+') => Ok(()),
        _ => Err("write requests per second, a number of at least 0, like 1 or 0.05".into()),
    }
}

/// A positive number of seconds (`0.5`, `2`).
pub fn check_seconds(text: &str) -> Result<(), String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && !text.starts_with('+') => Ok(()),
        _ => Err("write a number of seconds above 0, like 0.5: a bucket bound (`le`) of the service's latency histogram".into()),
    }
}

/// An HTTP path for metrics: starts with `/`, no spaces, query or fragment.
pub fn check_http_path(text: &str) -> Result<(), String> {
    let ok = text.starts_with('/')
        && !text.contains(|c: char| c.is_whitespace() || c == '?' || c == '#');
    if ok {
        Ok(())
    } else {
        Err("a metrics path starts with '/', like /metrics".into())
    }
}

/// A container image reference pinned by tag or digest (`registry/repo:tag` or `repo@sha256:...`).
pub fn check_pinned_image(text: &str) -> Result<(), String> {
    let last_segment = text.rsplit('/').next().unwrap_or(text);
    let pinned = text.contains("@sha256:")
        || last_segment
            .split_once(':')
            .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest");
    if pinned && !text.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(
            "pin the image by tag or digest, e.g. ghcr.io/example/stackgen:0.1.0 (never :latest)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for ok in ["15d", "1h30m", "90s", "500ms", "1y2w", "0s"] {
            assert!(check_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["", "15", "d", "15days", "30m1h", "1.5h", "-1h", "1h 30m"] {
            assert!(check_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ping_urls() {
        for ok in [
            "https://hc-ping.com/5f1c0a3e-7a1b-4c2d-9e8f-0a1b2c3d4e5f",
            "http://10.0.0.5:8080/ping?check=prod",
        ] {
            assert_eq!(check_ping_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "hc-ping.com/abc",
            "ftp://example.com/x",
            "https://user:secret@example.com/x",
            "https://example.com/a\nb",
            "https://example.com/a b",
            "https://example.com/a\u{7f}",
        ] {
            assert!(check_ping_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_in_milliseconds() {
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Ok(0.5));
        assert_eq!(parse_quantity("2"), Ok(2.0));
        assert_eq!(parse_quantity("1Gi"), Ok(1073741824.0));
        assert_eq!(parse_quantity("1.5Gi"), Ok(1610612736.0));
        for bad in ["", "Gi", "10GB", "1..5", ".5", "5.", "-1", "10 Gi"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_dns_label("payments-team").is_ok());
        for bad in ["Payments", "-a", "a-", "a_b", "", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
        assert!(check_dns_subdomain("grafana.example.com").is_ok());
        assert!(check_dns_subdomain("grafana..example").is_err());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_x").is_ok());
        assert!(check_label_value("a b").is_err());
        assert!(check_port_name("http-metrics").is_ok());
        assert!(check_port_name("http-metrics-long").is_err());
        assert!(check_port_name("8080").is_err());
    }

    #[test]
    fn misc() {
        assert!(check_email("oncall@example.com").is_ok());
        assert!(check_email("oncall@example").is_err());
        assert!(check_email("on call@example.com").is_err());
        assert!(check_http_path("/metrics").is_ok());
        assert!(check_http_path("metrics").is_err());
        assert!(check_pinned_image("quay.io/prometheus/prometheus:v3.13.2").is_ok());
        assert!(check_pinned_image("localhost:5000/stackgen").is_err());
        assert!(check_pinned_image("stackgen:latest").is_err());
        assert!(check_pinned_image("stackgen@sha256:abc").is_ok());
    }
}
