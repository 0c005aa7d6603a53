//! The handlebars engine behind the rendered files, with the stack templates embedded in the binary.
//!
//! Values reach YAML only through quoting: the escape function quotes every `{{value}}` as a YAML
//! double-quoted string, numbers and booleans go through the typed `{{int}}`/`{{bool}}` helpers,
//! and structured values through `{{yaml value indent=N}}`. Triple braces (unquoted output) are
//! never used in the templates, and strict mode turns a missing variable into a render error.

use std::sync::OnceLock;

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde_json::Value;

use crate::yaml;

/// Every template, by name (its path under `stack/`), embedded at build time.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../stack/namespace.yaml.hbs"),
    ),
    (
        "common/pdb.yaml",
        include_str!("../../stack/common/pdb.yaml.hbs"),
    ),
    (
        "common/networkpolicy.yaml",
        include_str!("../../stack/common/networkpolicy.yaml.hbs"),
    ),
    (
        "common/service.yaml",
        include_str!("../../stack/common/service.yaml.hbs"),
    ),
    (
        "common/serviceaccount.yaml",
        include_str!("../../stack/common/serviceaccount.yaml.hbs"),
    ),
    (
        "prometheus/prometheus.yml",
        include_str!("../../stack/prometheus/prometheus.yml.hbs"),
    ),
    (
        "prometheus/rbac.yaml",
        include_str!("../../stack/prometheus/rbac.yaml.hbs"),
    ),
    (
        "prometheus/statefulset.yaml",
        include_str!("../../stack/prometheus/statefulset.yaml.hbs"),
    ),
    (
        "alertmanager/alertmanager.yml",
        include_str!("../../stack/alertmanager/alertmanager.yml.hbs"),
    ),
    (
        "alertmanager/statefulset.yaml",
        include_str!("../../stack/alertmanager/statefulset.yaml.hbs"),
    ),
    (
        "grafana/datasources.yaml",
        include_str!("../../stack/grafana/datasources.yaml.hbs"),
    ),
    (
        "grafana/dashboards.yaml",
        include_str!("../../stack/grafana/dashboards.yaml.hbs"),
    ),
    (
        "grafana/deployment.yaml",
        include_str!("../../stack/grafana/deployment.yaml.hbs"),
    ),
    (
        "common/ingress.yaml",
        include_str!("../../stack/common/ingress.yaml.hbs"),
    ),
    (
        "common/pvc.yaml",
        include_str!("../../stack/common/pvc.yaml.hbs"),
    ),
    (
        "exporters/node-exporter.yaml",
        include_str!("../../stack/exporters/node-exporter.yaml.hbs"),
    ),
    (
        "exporters/kube-state-metrics.yaml",
        include_str!("../../stack/exporters/kube-state-metrics.yaml.hbs"),
    ),
    (
        "exporters/blackbox-exporter.yaml",
        include_str!("../../stack/exporters/blackbox-exporter.yaml.hbs"),
    ),
    (
        "router/router.yaml",
        include_str!("../../stack/router/router.yaml.hbs"),
    ),
    (
        "router/deployment.yaml",
        include_str!("../../stack/router/deployment.yaml.hbs"),
    ),
];

fn engine() -> Result<&'static Handlebars<'static>, String> {
    static ENGINE: OnceLock<Result<Handlebars<'static>, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut hb = Handlebars::new();
            hb.set_strict_mode(true);
            hb.register_escape_fn(yaml::quote);
            hb.register_helper(
                "int",
                Box::new(typed_helper("int", "a non-integer", int_text)),
            );
            hb.register_helper(
                "bool",
                Box::new(typed_helper("bool", "a non-boolean", bool_text)),
            );
            hb.register_helper("yaml", Box::new(yaml_helper));
            hb.register_helper(
                "comment",
                Box::new(typed_helper("comment", "a non-string", comment_value)),
            );
            for (name, text) in TEMPLATES {
                hb.register_template_string(name, *text)
                    .map_err(|e| format!("template {name}: {e}"))?;
            }
            Ok(hb)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Renders the named template with `context`.
pub fn render(name: &str, context: &Value) -> Result<String, String> {
    engine()?
        .render(name, context)
        .map_err(|e| format!("template {name}: {e}"))
}

fn param<'a>(h: &'a Helper, name: &str) -> Result<&'a Value, RenderError> {
    h.param(0)
        .map(|p| p.value())
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("value", 0).into())
        .map_err(|e: RenderError| {
            RenderErrorReason::Other(format!("{{{{{name}}}}} needs a value: {e}")).into()
        })
}

/// A helper that writes its one parameter as `convert` renders it, or fails naming what it
/// expected (`{{int}}` got a non-integer, ...).
fn typed_helper(
    name: &'static str,
    expected: &'static str,
    convert: fn(&Value) -> Option<String>,
) -> impl HelperDef + Send + Sync {
    move |h: &Helper,
          _: &Handlebars,
          _: &Context,
          _: &mut RenderContext,
          out: &mut dyn Output|
          -> HelperResult {
        let value = param(h, name)?;
        let text = convert(value).ok_or_else(|| {
            RenderErrorReason::Other(format!("{{{{{name}}}}} got {expected}: {value}"))
        })?;
        out.write(&text)?;
        Ok(())
    }
}

fn int_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn bool_text(value: &Value) -> Option<String> {
    value.as_bool().map(|b| b.to_string())
}

/// `{{comment text}}`: text inside a `# ` comment line; a line break continues the comment on
/// the next line, so no text can end the comment and start YAML.
fn comment_value(value: &Value) -> Option<String> {
    value.as_str().map(comment_text)
}

fn comment_text(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\n# ")
}

fn yaml_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let value = param(h, "yaml")?;
    let indent = h
        .hash_get("indent")
        .and_then(|v| v.value().as_u64())
        .ok_or_else(|| RenderErrorReason::Other("{{yaml}} needs indent=N".into()))?;
    out.write(&yaml::block(value, indent as usize))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_cannot_break_out_into_yaml() {
        assert_eq!(comment_text("one line"), "one line");
        assert_eq!(
            comment_text("first\nkind: Secret\r\nlast"),
            "first\n# kind: Secret\n# last"
        );
    }

    #[test]
    fn every_template_compiles_and_none_bypasses_quoting() {
        engine().expect("templates compile");
        for (name, text) in TEMPLATES {
            assert!(!text.contains("{{{"), "{name} uses unquoted triple braces");
        }
    }
}
