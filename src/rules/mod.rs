//! Alert rules and the queries of dashboards: the default rule files, rule files read with positions, the linter behind
//! `stackgen rules lint`, and the `promtool test rules` runner behind `stackgen rules test`.

pub mod dashboard;
pub mod defaults;
pub mod exposition;
pub mod file;
pub mod lint;
pub mod promql;
pub mod team;
pub mod template;
pub mod test;
