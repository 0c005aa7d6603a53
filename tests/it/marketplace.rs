//! The 1-click marketplace listing (`marketplace/stackgen-monitoring/`): its manifests are exactly
//! what `stackgen render` makes of its spec and pass the real validators.

use std::path::PathBuf;

use yaml_rust2::YamlLoader;

use super::support::{blessing, dir_differences, render_to_temp, root, stackgen, stderr};
use super::validators::{
    check_amtool, check_kustomize_and_kubernetes_validate, check_promtool, check_router_config,
};

const LISTING: &str = "marketplace/stackgen-monitoring";
const NS: &str = "stackgen-monitoring";

fn listing_dir() -> PathBuf {
    root().join(LISTING)
}

#[test]
fn listing_manifests_are_what_stackgen_renders_from_its_spec() {
    let spec = format!("{LISTING}/stack.yaml");
    let committed = listing_dir().join("manifests");
    if blessing() {
        let output = stackgen(&["render", &spec, "--out", &format!("{LISTING}/manifests")]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let (_tmp, rendered) = render_to_temp(&spec);
    let differences = dir_differences(
        (&format!("{LISTING}/manifests"), &committed),
        ("the fresh render", &rendered),
    );
    assert!(
        differences.is_empty(),
        "{LISTING}/manifests is not what `stackgen render {spec}` writes:\n  {}\n\
         regenerate it with: cargo run -- render {spec} --out {LISTING}/manifests \
         (or STACKGEN_BLESS=1 cargo test --test it marketplace), then review the diff",
        differences.join("\n  ")
    );
}

#[test]
fn listing_manifests_pass_kustomize_and_kubernetes_validate() {
    let built = check_kustomize_and_kubernetes_validate(LISTING, &listing_dir().join("manifests"));
    let docs = YamlLoader::load_from_str(&built).expect("kustomize output parses");
    assert!(
        docs.iter().any(|d| d["kind"].as_str() == Some("Namespace")
            && d["metadata"]["name"].as_str() == Some(NS))
    );
}

#[test]
fn listing_configs_pass_promtool_amtool_and_router_check_config() {
    let dir = listing_dir().join("manifests");
    check_promtool(LISTING, &dir);
    check_amtool(LISTING, &dir, &format!("{LISTING}/stack.yaml"));
    check_router_config(LISTING, &dir);
}
