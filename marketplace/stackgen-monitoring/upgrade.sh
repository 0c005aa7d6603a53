#!/bin/sh
# Upgrades an installed stackgen-monitoring to the manifests in this folder (a newer listing, or
# manifests/ re-rendered after a change to stack.yaml): applies them server-side, waits for every
# workload, then deletes the objects the new manifests no longer have (those carrying
# app.kubernetes.io/part-of=stackgen that this listing applied). Data volumes
# (PersistentVolumeClaims) and the generated Secrets are never pruned.
#
# Usage: upgrade.sh           (KUBECTL=/path/to/kubectl and ROLLOUT_TIMEOUT=10m are honoured)
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
check_installed
ensure_generated_secrets
apply_manifests
wait_for_rollouts
delete_owned_except "$APPLIED"
print_access
