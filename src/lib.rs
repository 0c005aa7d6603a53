//! stackgen renders a production-grade Prometheus + Alertmanager + Grafana stack for a Kubernetes
//! cluster from one short spec, and routes the stack's alerts to the teams that own the services.
//!
//! - [`spec`]: the cluster spec (`stack.yaml`), validated with every problem reported at once.
//! - [`render`]: the pure renderer (spec in, files out) and its single writer, [`render::output`].
//! - [`rules`]: default alert rules, the rule linter and the `promtool test rules` runner.
//! - [`diagnostic`]: file:line:col errors with the source line, a caret and a hint.
//! - [`cli`]: the command line; the only code that prints.

pub mod cli;
mod config_check;
pub mod diagnostic;
pub mod files;
mod hash;
pub mod labels;
pub mod reload;
pub mod render;
pub mod router;
pub mod rules;
pub mod spec;
pub mod time_interval;
pub mod yaml;
