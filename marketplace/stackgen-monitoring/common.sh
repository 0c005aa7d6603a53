# shellcheck shell=sh
# Shared by deploy.sh, upgrade.sh and uninstall.sh: the listing's names, the failure report, the
# cluster checks and each kubectl step. Sourced by those scripts after they set HERE (this folder)
# and SCRIPT (their own name); never run alone.
#
# Every kubectl call's output is captured before it is used (POSIX sh has no pipefail), and every
# step names itself first, so a failure anywhere ends the script with what failed and what to do.

# Names fixed by stack.yaml (a test checks that they agree).
NAMESPACE=stackgen-monitoring
GRAFANA_SECRET=grafana-admin
ROUTER_SECRET=stackgen-router-auth
# Every object of the stack carries this label, and the listing applies it with this field
# manager: pruning and uninstalling touch only objects that have both.
PART_OF=stackgen
FIELD_MANAGER=stackgen-marketplace

# The smallest cluster the listing installs on: allocatable resources summed over the nodes
# (README.md, "Minimum cluster size"; a test checks the stack's requests fit).
MIN_NODES=2
MIN_CPU_MILLICORES=2000
MIN_MEMORY_MIB=4096

# How long each workload may take to become ready.
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-10m}
KUBECTL=${KUBECTL:-kubectl}
MANIFESTS=$HERE/manifests

# The kinds upgrade.sh prunes and uninstall.sh deletes: every kind the stack has, except the
# PersistentVolumeClaims (its data), the Secrets (the generated passwords, which belong with that
# data) and the Namespace (which holds both). uninstall.sh --delete-volumes deletes the namespace.
OWNED_KINDS=deployments.apps,statefulsets.apps,daemonsets.apps,services,configmaps,serviceaccounts,networkpolicies.networking.k8s.io,poddisruptionbudgets.policy,ingresses.networking.k8s.io,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io

# One line per object: apiVersion, kind, namespace and name, separated by tabs; live objects add
# their field managers.
OBJECT_LINES='jsonpath={range .items[*]}{.apiVersion}{"\t"}{.kind}{"\t"}{.metadata.namespace}{"\t"}{.metadata.name}{"\n"}{end}'
LIVE_OBJECT_LINES='jsonpath={range .items[*]}{.apiVersion}{"\t"}{.kind}{"\t"}{.metadata.namespace}{"\t"}{.metadata.name}{"\t"}{.metadata.managedFields[*].manager}{"\n"}{end}'
NODE_LINES='jsonpath={range .items[*]}{.status.allocatable.cpu}{"\t"}{.status.allocatable.memory}{"\n"}{end}'
TAB=$(printf '\t')

# An awk function naming an object the way kubectl does (`deployment.apps/grafana`, `service/x`).
AWK_RESOURCE='function resource(api, kind,   group) {
  group = api
  if (group !~ /\//) return tolower(kind)
  sub(/\/.*/, "", group)
  return tolower(kind) "." group
}'

STEP="starting"
NEXT="re-run $SCRIPT"

# step WHAT NEXT: names the step about to run and what to do when it fails.
step() {
  STEP=$1
  NEXT=$2
}

say() {
  printf '%s: %s\n' "$SCRIPT" "$*"
}

# fail MESSAGE NEXT: stops the script with a message and the next step to take.
fail() {
  trap - EXIT
  printf '%s: error: %s\n' "$SCRIPT" "$1" >&2
  printf '%s: next step: %s\n' "$SCRIPT" "$2" >&2
  exit 1
}

usage_error() {
  trap - EXIT
  printf '%s\n' "$1" >&2
  exit 2
}

# Any command that fails (set -e) ends up here: say which step it was and what to do next.
report_failure() {
  status=$?
  trap - EXIT
  if [ "$status" -ne 0 ]; then
    printf '%s: error: %s failed (exit status %s); the message above says why\n' "$SCRIPT" "$STEP" "$status" >&2
    printf '%s: next step: %s\n' "$SCRIPT" "$NEXT" >&2
  fi
  exit "$status"
}
trap report_failure EXIT

require_kubectl() {
  if ! command -v "$KUBECTL" >/dev/null 2>&1; then
    fail "kubectl not found (looked for \`$KUBECTL\`)" "install kubectl, point it at your cluster (doctl kubernetes cluster kubeconfig save CLUSTER) and re-run $SCRIPT, or set KUBECTL to its path"
  fi
}

# The cluster answers and has at least MIN_NODES nodes, MIN_CPU_MILLICORES and MIN_MEMORY_MIB.
check_cluster() {
  step "reaching the cluster (kubectl get nodes)" "make kubectl point at your cluster (kubectl config current-context; for DigitalOcean: doctl kubernetes cluster kubeconfig save CLUSTER), then re-run $SCRIPT"
  nodes=$("$KUBECTL" get nodes -o "$NODE_LINES")
  size=$(printf '%s\n' "$nodes" | awk -F "$TAB" '
    function millicores(q) {
      if (q ~ /m$/) return substr(q, 1, length(q) - 1) + 0
      return q * 1000
    }
    function mebibytes(q,   n, unit) {
      n = q + 0
      unit = q
      sub(/^[0-9.]+/, "", unit)
      if (unit == "Ki") return n / 1024
      if (unit == "Mi") return n
      if (unit == "Gi") return n * 1024
      if (unit == "Ti") return n * 1048576
      if (unit == "k") return n * 1000 / 1048576
      if (unit == "M") return n * 1000000 / 1048576
      if (unit == "G") return n * 1000000000 / 1048576
      if (unit == "T") return n * 1000000000000 / 1048576
      return n / 1048576
    }
    NF >= 2 { count++; cpu += millicores($1); memory += mebibytes($2) }
    END { printf "%d %d %d\n", count, cpu, memory }')
  read -r node_count cpu_millicores memory_mib <<EOF
$size
EOF
  if [ "$node_count" -lt "$MIN_NODES" ] || [ "$cpu_millicores" -lt "$MIN_CPU_MILLICORES" ] || [ "$memory_mib" -lt "$MIN_MEMORY_MIB" ]; then
    fail "the cluster is too small: $node_count node(s) with ${cpu_millicores}m CPU and ${memory_mib}Mi memory allocatable in all; stackgen-monitoring needs at least $MIN_NODES nodes with ${MIN_CPU_MILLICORES}m CPU and ${MIN_MEMORY_MIB}Mi memory between them" "add nodes or use larger ones (for DigitalOcean: doctl kubernetes cluster node-pool update CLUSTER POOL --count $MIN_NODES), then re-run $SCRIPT"
  fi
  say "cluster: $node_count nodes, ${cpu_millicores}m CPU and ${memory_mib}Mi memory allocatable"
}

# One line per workload: kind, name and the stack it is part of.
WORKLOAD_LINES='jsonpath={range .items[*]}{.kind}{"\t"}{.metadata.name}{"\t"}{.metadata.labels.app\.kubernetes\.io/part-of}{"\n"}{end}'

# The namespace is the stack's alone: no workload of another stack or tool runs in it (its
# NetworkPolicies would cut that workload off, and a second Prometheus or Grafana chart there
# would fight over the same names). A namespace that does not exist yet holds nothing.
check_namespace_free() {
  step "checking that namespace $NAMESPACE holds only stackgen-monitoring (kubectl get deployments,statefulsets,daemonsets)" "make kubectl point at your cluster (kubectl config current-context), then re-run $SCRIPT"
  workloads=$("$KUBECTL" -n "$NAMESPACE" get deployments,statefulsets,daemonsets -o "$WORKLOAD_LINES")
  foreign=$(printf '%s\n' "$workloads" | awk -F "$TAB" -v ours="$PART_OF" 'NF >= 2 && $3 != ours { printf "%s%s/%s", (n++ ? ", " : ""), tolower($1), $2 }')
  if [ -n "$foreign" ]; then
    fail "namespace $NAMESPACE already runs workloads that are not stackgen-monitoring's: $foreign" "install stackgen-monitoring into a cluster whose $NAMESPACE namespace is free (move or uninstall what runs there first; kube-prometheus-stack and Grafana charts are uninstalled with helm uninstall), then re-run $SCRIPT"
  fi
}

# The listing is installed: its namespace exists.
check_installed() {
  step "reaching the cluster (kubectl get namespace $NAMESPACE)" "make kubectl point at your cluster (kubectl config current-context), then re-run $SCRIPT"
  found=$("$KUBECTL" get namespace "$NAMESPACE" --ignore-not-found -o name)
  if [ -z "$found" ]; then
    fail "stackgen-monitoring is not installed in this cluster (no namespace $NAMESPACE)" "install it with deploy.sh"
  fi
}

apply_namespace() {
  step "creating namespace $NAMESPACE" "check that you may create namespaces (kubectl auth can-i create namespaces), then re-run $SCRIPT"
  "$KUBECTL" apply --server-side --field-manager="$FIELD_MANAGER" -f "$MANIFESTS/namespace.yaml"
}

# random_hex BYTES: that many bytes from /dev/urandom, as hex.
random_hex() {
  hex=$(od -A n -N "$1" -t x1 /dev/urandom | tr -d ' \n')
  if [ "${#hex}" -ne $(($1 * 2)) ]; then
    fail "could not read $1 random bytes from /dev/urandom" "run $SCRIPT on a machine with /dev/urandom"
  fi
  printf '%s' "$hex"
}

# secret_manifest NAME KEY VALUE [KEY VALUE...]: a Secret for kubectl's standard input, so that
# values never appear on a command line or in a log.
secret_manifest() {
  printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n  labels:\n    app.kubernetes.io/part-of: %s\n    app.kubernetes.io/managed-by: %s\ntype: Opaque\nstringData:\n' "$1" "$NAMESPACE" "$PART_OF" "$FIELD_MANAGER"
  shift
  while [ "$#" -ge 2 ]; do
    printf '  %s: "%s"\n' "$1" "$2"
    shift 2
  done
}

# The Grafana admin password and the router's bearer token: generated here, only when missing,
# so a second run (or an upgrade) keeps the ones in use.
ensure_generated_secrets() {
  step "creating the generated Secrets" "check that you may read and create Secrets in $NAMESPACE (kubectl auth can-i create secrets -n $NAMESPACE), then re-run $SCRIPT"
  found=$("$KUBECTL" -n "$NAMESPACE" get secret "$GRAFANA_SECRET" --ignore-not-found -o name)
  if [ -z "$found" ]; then
    password=$(random_hex 24)
    secret_manifest "$GRAFANA_SECRET" admin-user admin admin-password "$password" | "$KUBECTL" create -f -
    say "created Secret $GRAFANA_SECRET: Grafana user admin with a random password"
  else
    say "Secret $GRAFANA_SECRET exists: kept"
  fi
  found=$("$KUBECTL" -n "$NAMESPACE" get secret "$ROUTER_SECRET" --ignore-not-found -o name)
  if [ -z "$found" ]; then
    token=$(random_hex 32)
    secret_manifest "$ROUTER_SECRET" token "$token" | "$KUBECTL" create -f -
    say "created Secret $ROUTER_SECRET: a random token Alertmanager presents to the router"
  else
    say "Secret $ROUTER_SECRET exists: kept"
  fi
}

# Applies manifests/ server-side; APPLIED holds the applied objects (OBJECT_LINES).
apply_manifests() {
  step "applying the manifests in $MANIFESTS" "read kubectl's message above; a conflict means an object was changed by hand (kubectl apply --server-side --force-conflicts --field-manager=$FIELD_MANAGER -k $MANIFESTS takes it back), then re-run $SCRIPT"
  APPLIED=$("$KUBECTL" apply --server-side --field-manager="$FIELD_MANAGER" -k "$MANIFESTS" -o "$OBJECT_LINES")
  if [ -z "$APPLIED" ]; then
    fail "kubectl apply reported no objects" "check that $MANIFESTS holds the rendered stack (kubectl kustomize $MANIFESTS), then re-run $SCRIPT"
  fi
  say "applied $(printf '%s\n' "$APPLIED" | awk 'END { print NR }') objects"
}

# Waits for every Deployment, StatefulSet and DaemonSet just applied to be ready.
wait_for_rollouts() {
  workloads=$(printf '%s\n' "$APPLIED" | awk -F "$TAB" "$AWK_RESOURCE"'
    $2 == "Deployment" || $2 == "StatefulSet" || $2 == "DaemonSet" { print $3, resource($1, $2) "/" $4 }')
  while read -r namespace workload; do
    [ -n "$workload" ] || continue
    step "waiting for the rollout of $workload" "see why: kubectl -n $namespace describe $workload; kubectl -n $namespace get events --sort-by=.lastTimestamp (a missing Secret or a volume that cannot be provisioned are the usual causes), then re-run $SCRIPT"
    "$KUBECTL" -n "$namespace" rollout status "$workload" --timeout="$ROLLOUT_TIMEOUT" </dev/null
  done <<EOF
$workloads
EOF
}

# delete_owned_except KEEP: deletes every object of OWNED_KINDS that carries the part-of label and
# was applied by this listing's field manager, in any namespace or none, unless KEEP (lines as
# OBJECT_LINES prints them) names it. One kubectl delete per namespace.
delete_owned_except() {
  step "listing the objects stackgen-monitoring applied" "make kubectl point at your cluster and check that you may list these kinds in all namespaces, then re-run $SCRIPT"
  live=$("$KUBECTL" get "$OWNED_KINDS" --all-namespaces -l "app.kubernetes.io/part-of=$PART_OF" -o "$LIVE_OBJECT_LINES")
  batches=$(printf '%s\n--\n%s\n' "$1" "$live" | awk -F "$TAB" -v manager="$FIELD_MANAGER" "$AWK_RESOURCE"'
    $0 == "--" { listing_live = 1; next }
    NF < 4 { next }
    # Never these, whatever the server returns: data volumes, Secrets and the namespace stay.
    $2 == "PersistentVolumeClaim" || $2 == "Secret" || $2 == "Namespace" { next }
    !listing_live { keep[$3 SUBSEP resource($1, $2) SUBSEP $4] = 1; next }
    index(" " $5 " ", " " manager " ") == 0 { next }
    ($3 SUBSEP resource($1, $2) SUBSEP $4) in keep { next }
    {
      namespace = ($3 == "" ? "-" : $3)
      if (!(namespace in objects)) order[++count] = namespace
      objects[namespace] = objects[namespace] " " resource($1, $2) "/" $4
    }
    END { for (i = 1; i <= count; i++) print order[i] objects[order[i]] }')
  while read -r namespace objects; do
    [ -n "$objects" ] || continue
    where="in namespace $namespace"
    [ "$namespace" != "-" ] || where="of no namespace"
    step "deleting the objects $where" "read kubectl's message above, then re-run $SCRIPT (objects already deleted are skipped)"
    say "deleting $objects"
    # One word per object: the list is split on purpose.
    # shellcheck disable=SC2086
    if [ "$namespace" = "-" ]; then
      "$KUBECTL" delete $objects --ignore-not-found </dev/null
    else
      "$KUBECTL" -n "$namespace" delete $objects --ignore-not-found </dev/null
    fi
  done <<EOF
$batches
EOF
}

print_access() {
  cat <<EOF

stackgen-monitoring is ready in namespace $NAMESPACE.

Grafana       kubectl -n $NAMESPACE port-forward svc/grafana 3000:3000
              then open http://localhost:3000 as user admin; the password is in Secret $GRAFANA_SECRET:
              kubectl -n $NAMESPACE get secret $GRAFANA_SECRET -o jsonpath='{.data.admin-password}' | base64 -d; echo
Prometheus    kubectl -n $NAMESPACE port-forward svc/prometheus 9090:9090, then http://localhost:9090
Alertmanager  kubectl -n $NAMESPACE port-forward svc/alertmanager 9093:9093, then http://localhost:9093
Alerts        go to the teams in stack.yaml; with none, to the router's log:
              kubectl -n $NAMESPACE logs deploy/stackgen-router -f
              README.md shows how to add a team with a Slack webhook.
EOF
}
