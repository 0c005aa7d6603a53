#!/usr/bin/env bash
# What the default rules cost the real Prometheus on a simulated cluster of 100 nodes and 5,000
# pods (50 services of three teams in 10 namespaces, plus the stack, its DaemonSets and the
# simulation's own workloads), for the stack rendered by each revision in REVISIONS from the same
# spec: the series its recording rules keep, and the evaluation time of every rule group
# (prometheus_rule_group_last_duration_seconds, the median of READINGS evaluations once WARMUP
# seconds have filled every 5-minute window). The exporters are the suite's simulated cluster
# (tests/it/simulated), serving a steady state; Prometheus scrapes and evaluates every 15 s
# (INTERVAL).
#
#   bench/rule-cost.sh
#
# Environment knobs (defaults in brackets):
#   REVISIONS   git revisions to compare, oldest first ["7563302 fa68933 HEAD"]: before the
#               ownership map of Kubernetes signals, before the default alerts' coverage work,
#               and now. Each other than HEAD is built (debug) in a git worktree under a temp dir.
#   NODES, PODS cluster size [100, 5000]
#   SERVICES    services in the spec [50]
#   SLO_SERVICES  how many of them have an availability and a latency objective [0]; a spec with
#               objectives renders only with revisions that know services[].slos
#   UNREAD      1: the exporters also serve the families real ones do that the stack reads
#               nothing of (cAdvisor's file system and network, the API server's every resource,
#               node-exporter's every CPU mode, ...); 0: only what the rules read [1]
#   INTERVAL    Prometheus' scrape and evaluation interval, in seconds [15]
#   WARMUP      seconds before the readings [330]
#   READINGS    evaluations read per rule group [8]
#   TARGET_DIR  cargo target dir for the older revisions [a temp dir; set it to keep the builds]
# Takes about 8 minutes per revision plus the builds; prints a markdown summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
REVISIONS=${REVISIONS:-"7563302 fa68933 HEAD"}
work=$(mktemp -d)
TARGET_DIR=${TARGET_DIR:-$work/target}
cleanup() {
  for tree in "$work"/tree-*; do
    if [ -d "$tree" ]; then
      git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

spec="$work/spec.yaml"
python3 - "$spec" "${SERVICES:-50}" "${SLO_SERVICES:-0}" <<'PY'
import sys
services, with_slos = int(sys.argv[2]), int(sys.argv[3])
teams = ["payments", "search", "platform"]
with open(sys.argv[1], "w") as f:
    f.write("cluster: {name: sim, platform: generic}\nrouter: {platform_team: platform}\nteams:\n")
    for team in teams:
        f.write(f"  - {{name: {team}, webhook: {{url: {{secret: {team}-alerting, key: url}}}}}}\n")
    f.write("services:\n")
    for i in range(services):
        f.write(f"  - name: svc-{i}\n    team: {teams[i % 3]}\n    namespace: ns-{i % 10}\n"
                f"    selector: {{app: svc-{i}}}\n    port: http-metrics\n")
        if i < with_slos:
            f.write("    slos:\n      availability: {objective: 99.9}\n"
                    "      latency: {objective: 99, threshold: 0.5}\n")
PY

cargo build --quiet
for rev in $REVISIONS; do
  sha=$(git rev-parse --short "$rev")
  if [ "$(git rev-parse "$rev")" = "$(git rev-parse HEAD)" ] && git diff --quiet HEAD -- src stack; then
    binary="$root/target/debug/stackgen"
  else
    echo "building $sha" >&2
    git worktree add --detach "$work/tree-$sha" "$sha" >/dev/null 2>&1
    (cd "$work/tree-$sha" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet)
    binary="$TARGET_DIR/debug/stackgen"
  fi
  "$binary" render "$spec" --out "$work/out-$sha" 2>/dev/null
  echo "measuring $sha" >&2
  STACKGEN_BENCH_SPEC="$spec" STACKGEN_BENCH_OUT="$work/out-$sha" \
    STACKGEN_BENCH_NODES="${NODES:-100}" STACKGEN_BENCH_PODS="${PODS:-5000}" \
    STACKGEN_BENCH_WARMUP="${WARMUP:-330}" STACKGEN_BENCH_READINGS="${READINGS:-8}" \
    STACKGEN_BENCH_UNREAD="${UNREAD:-1}" STACKGEN_BENCH_INTERVAL="${INTERVAL:-15}" \
    STACKGEN_BENCH_RESULT="$work/result-$sha.json" \
    cargo test --quiet --test it -- --ignored --exact \
    simulated::cost::rule_evaluation_cost_on_a_large_cluster >/dev/null
  echo "$sha $(git log -1 --format=%s "$sha" | cut -c1-60)" >>"$work/revisions"
done

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
revisions = [line.split(" ", 1) for line in open(f"{work}/revisions").read().splitlines()]
results = {sha: json.load(open(f"{work}/result-{sha}.json")) for sha, _ in revisions}
first = results[revisions[0][0]]
print(f"{first['nodes']} nodes, {first['pods']} pods, {first['targets']} targets; median of the readings, seconds per evaluation.\n")
print("| revision | head series | recorded series | rule groups | evaluation, all groups (s) | slowest groups (s) |")
print("| --- | ---: | ---: | ---: | ---: | --- |")
for sha, subject in revisions:
    r = results[sha]
    slowest = sorted(r["groups"], key=lambda g: -g["median_seconds"])[:3]
    slow = ", ".join(f"{g['group']} {g['median_seconds']:.3f}" for g in slowest)
    print(f"| {sha} ({subject}) | {r['head_series']:,.0f} | {r['recorded_series']:,.0f} | "
          f"{r['rule_groups']} | {r['evaluation_seconds_total']:.3f} | {slow} |")
jobs = ["apiserver", "kubelet", "cadvisor", "node-exporter", "kube-state-metrics"]
if all("samples_by_job" in results[sha] for sha, _ in revisions):
    print("\nSamples per scrape cycle kept (of those scraped), and Prometheus' resident memory:\n")
    print("| revision | " + " | ".join(jobs) + " | resident memory |")
    print("| --- |" + " ---: |" * (len(jobs) + 1))
    for sha, _ in revisions:
        r = results[sha]
        cells = []
        for job in jobs:
            j = r["samples_by_job"].get(job, {"kept": 0, "scraped": 0})
            cells.append(f"{j['kept']:,.0f} ({j['scraped']:,.0f})")
        print(f"| {sha} | " + " | ".join(cells) + f" | {r['resident_mib']:,.0f} MiB |")
PY
