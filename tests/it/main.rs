//! Integration tests: the built `stackgen` binary, its golden output, and the real validators
//! (promtool, amtool, kubectl kustomize, kubernetes-validate) run over that output.

mod cli;
mod destinations;
mod golden;
mod pg;
mod router;
mod router_ha;
mod rules;
mod store;
mod support;
mod validators;
