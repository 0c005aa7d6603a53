//! Label names with one meaning across stackgen. The rule linter's per-instance check and the
//! router's member identity read the same list, so an alert the linter calls per-instance is one
//! whose instances the router folds into one incident.

/// Labels that identify one instance of a service rather than the service, in the order the
/// router writes a member's identity (`pod=checkout-1,node=n1`).
pub const PER_INSTANCE_LABELS: &[&str] = &[
    "instance",
    "pod",
    "node",
    "container",
    "pod_ip",
    "host",
    "hostname",
    "uid",
    "endpoint",
];
