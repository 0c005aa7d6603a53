#!/usr/bin/env bash
# How `stackgen validate` and `stackgen render` scale with the number of services in a spec:
# N services of three teams in 500 namespaces, each selected by its own `app` value, for each N
# in SIZES (36,000 services come close to the 4 MiB a spec may take).
#
#   cargo build --release && bench/large-spec.sh
#
# Environment knobs (defaults in brackets):
#   STACKGEN   stackgen binary [<repo>/target/release/stackgen]
#   SIZES      service counts ["4500 9000 18000 36000"]
# Prints one line per size: services, spec KiB, then seconds and peak resident MiB of validate
# and of render. Runs in a temp dir removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
STACKGEN=$(realpath "${STACKGEN:-target/release/stackgen}")
SIZES=${SIZES:-"4500 9000 18000 36000"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>&1
  read -r seconds kib <"$work/time"
  printf '%9s %9d' "$seconds" $((kib / 1024))
}
printf '%8s %8s %9s %9s %9s %9s\n' services spec_KiB valid_s valid_MiB render_s render_MiB
for n in $SIZES; do
  spec="$work/stack-$n.yaml"
  python3 - "$n" "$spec" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
teams = ["payments", "search", "platform"]
with open(path, "w") as f:
    f.write("cluster: {name: bench, platform: digitalocean}\nrouter: {platform_team: platform}\nteams:\n")
    for team in teams:
        f.write(f"  - {{name: {team}, webhook: {{url: {{secret: {team}-alerting, key: url}}}}}}\n")
    f.write("services:\n")
    for i in range(n):
        f.write(f"  - name: svc-{i}\n    team: {teams[i % 3]}\n    namespace: ns-{i % 500}\n"
                f"    selector: {{app: svc-{i}}}\n    port: 8080\n")
PY
  printf '%8d %8d' "$n" $(($(stat -c %s "$spec") / 1024))
  measure "$STACKGEN" validate "$spec"
  measure "$STACKGEN" render "$spec" --out "$work/out-$n"
  rm -rf "$work/out-$n"
  echo
done
