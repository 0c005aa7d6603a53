#!/bin/sh
# Removes stackgen-monitoring: every object this listing applied, cluster-scoped ones (ClusterRoles,
# ClusterRoleBindings) and those in other namespaces (Roles, RoleBindings) included.
#
# By default the namespace stays with what must outlive a reinstall: the data volumes
# (PersistentVolumeClaims of Prometheus, Alertmanager, Grafana and the router) and the Secrets
# (Grafana's admin password is stored in Grafana's database on its volume, so the two go together).
# deploy.sh picks them up again. --delete-volumes deletes the namespace with all of that in it.
#
# Usage: uninstall.sh [--delete-volumes]
set -eu
SCRIPT=${0##*/}
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
if [ ! -f "$HERE/common.sh" ]; then
  printf '%s: common.sh is not beside %s; run the script from the stackgen-monitoring folder\n' "$SCRIPT" "$0" >&2
  exit 1
fi
# shellcheck source=common.sh
. "$HERE/common.sh"

usage="usage: $SCRIPT [--delete-volumes]"
delete_volumes=no
for arg in "$@"; do
  case $arg in
    --delete-volumes) delete_volumes=yes ;;
    -h | --help)
      printf '%s\n' "$usage"
      trap - EXIT
      exit 0
      ;;
    *) usage_error "$usage" ;;
  esac
done

require_kubectl
delete_owned_except ""

if [ "$delete_volumes" = yes ]; then
  step "deleting namespace $NAMESPACE with its volumes and Secrets" "see what holds the namespace: kubectl get namespace $NAMESPACE -o yaml (finalizers, stuck volumes), then re-run $SCRIPT --delete-volumes"
  "$KUBECTL" delete namespace "$NAMESPACE" --ignore-not-found --timeout=5m
  say "stackgen-monitoring is uninstalled; its volumes are deleted with their PersistentVolumeClaims (a storage class with reclaimPolicy Retain keeps the PersistentVolumes: kubectl get pv)"
else
  say "stackgen-monitoring is uninstalled. Kept: namespace $NAMESPACE with the data volumes and Secrets (kubectl -n $NAMESPACE get pvc,secrets); deploy.sh uses them again."
  say "to delete them too: $HERE/uninstall.sh --delete-volumes"
fi
