//! Integration tests: the built `stackgen` binary, its golden output, the real validators
//! (promtool, amtool, kubectl kustomize, kubernetes-validate) run over that output, and the
//! marketplace listing's manifests and scripts, and the rendered stack run end to end with the
//! real Prometheus, Alertmanager and router (`e2e`).

mod cli;
mod conventions;
mod destinations;
mod direct_path;
mod e2e;
mod fleet;
mod golden;
mod http_stub;
mod incidents;
mod keep;
mod kube_state;
mod labelled_pods;
mod marketplace;
mod page;
mod pg;
mod pg_tls;
mod probes;
mod reload;
mod remote_write;
mod router;
mod router_ha;
mod rules;
mod simulated;
mod slo_status;
mod store;
mod support;
mod team_files;
mod validators;
mod yaml_readers;
