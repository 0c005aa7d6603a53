#!/usr/bin/env bash
# How `stackgen rules lint` scales with the size of a rule file: one group of N alerts (each
# with a finding, so every rule is also rendered as a diagnostic), for each N in SIZES.
#
#   cargo build --release && bench/rules-lint.sh
#
# Environment knobs (defaults in brackets):
#   STACKGEN   stackgen binary [<repo>/target/release/stackgen]
#   SIZES      rule counts ["5000 10000 20000 40000"]
# Prints one line per size: rules, seconds (wall clock), rules per second. Runs in a temp dir
# removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
STACKGEN=${STACKGEN:-target/release/stackgen}
SIZES=${SIZES:-"5000 10000 20000 40000"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%8s %9s %12s\n' rules seconds rules/s
for n in $SIZES; do
  file="$work/rules-$n.yaml"
  python3 - "$n" "$file" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("groups:\n  - name: bench\n    rules:\n")
    for i in range(n):
        f.write(f"      - alert: Alert{i}\n        expr: up{{job=\"job{i}\"}} == 0\n        for: 5m\n"
                f"        labels: {{severity: warning}}\n"
                f"        annotations: {{summary: s, description: d, runbook_url: https://runbooks.example/{i}}}\n")
PY
  start=$(date +%s.%N)
  "$STACKGEN" rules lint "$file" >/dev/null 2>&1 || true
  end=$(date +%s.%N)
  python3 -c "import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'{n:8d} {s:9.3f} {n / s:12.0f}')" "$n" "$start" "$end"
done
