#!/bin/sh
# Installs stackgen-monitoring (Prometheus, Alertmanager, Grafana, node-exporter, kube-state-metrics
# and the stackgen alert router) into the cluster kubectl points at. Everything it applies is in
# this folder (manifests/, rendered from stack.yaml); it reaches nothing but the cluster. Running it
# again changes nothing: the manifests are applied server-side and the generated Secrets are kept.
#
# Usage: deploy.sh            (KUBECTL=/path/to/kubectl and ROLLOUT_TIMEOUT=10m are honoured)
set -eu
SCRIPT=${0##*/}
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
if [ ! -f "$HERE/common.sh" ]; then
  printf '%s: common.sh is not beside %s; run the script from the stackgen-monitoring folder\n' "$SCRIPT" "$0" >&2
  exit 1
fi
# shellcheck source=common.sh
. "$HERE/common.sh"

[ "$#" -eq 0 ] || usage_error "usage: $SCRIPT (no arguments)"

require_kubectl
check_cluster
check_namespace_free
apply_namespace
ensure_generated_secrets
apply_manifests
wait_for_rollouts
print_access
