//! Integration tests: the built `stackgen` binary, its golden output, the real validators
//! (promtool, amtool, kubectl kustomize, kubernetes-validate) run over that output, and the
//! marketplace listing's manifests and scripts.

mod cli;
mod destinations;
mod golden;
mod marketplace;
mod router;
mod rules;
mod support;
mod validators;
