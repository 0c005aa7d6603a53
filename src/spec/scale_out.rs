//! Beyond one Prometheus: `prometheus.remote_write` to Prometheus-compatible stores (Mimir,
//! Thanos Receive, VictoriaMetrics, Cortex, hosted services) and `prometheus.thanos`, the Thanos
//! sidecar that ships blocks to object storage and serves the global query layer.
//!
//! The model only; `load` reads it, the Prometheus renderer writes it out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::SecretRef;

/// One `remote_write` target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteWrite {
    /// Names the queue in Prometheus' own metrics (`remote_name`); unique in the spec.
    pub name: String,
    pub url: String,
    pub auth: Option<RemoteWriteAuth>,
    pub tls: Option<Tls>,
    /// Extra HTTP headers (`X-Scope-OrgID` for a Mimir or Cortex tenant).
    pub headers: BTreeMap<String, String>,
    /// Prometheus `queue_config` fields, as written (numbers and durations checked).
    pub queue: BTreeMap<String, Value>,
    /// Only these kinds of series are sent (`series:`); empty: every series.
    pub series: Vec<SeriesKind>,
    /// Prometheus `write_relabel_configs`, checked field by field, after `series`.
    pub write_relabel: Vec<Value>,
}

/// Which series a `remote_write` keeps by name (`series: [recorded, services]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// What recording rules write (names of the `level:metric:operation` form), the SLIs and
    /// aggregates a global view reads.
    Recorded,
    /// Everything scraped from the declared services and the pods asking to be scraped.
    Services,
}

impl SeriesKind {
    pub const ALL: [(&'static str, SeriesKind); 2] = [
        ("recorded", SeriesKind::Recorded),
        ("services", SeriesKind::Services),
    ];
}

/// How Prometheus signs in to a remote store; every secret by reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteWriteAuth {
    Basic {
        username: String,
        password: SecretRef,
    },
    Bearer {
        token: SecretRef,
    },
    OAuth2 {
        client_id: String,
        client_secret: SecretRef,
        token_url: String,
        scopes: Vec<String>,
        endpoint_params: BTreeMap<String, String>,
    },
}

/// TLS towards a remote store: a private CA, a client certificate, the name to verify.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Tls {
    pub ca: Option<SecretRef>,
    pub cert: Option<SecretRef>,
    pub key: Option<SecretRef>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl RemoteWrite {
    /// The Secret keys this target reads.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        let auth = match &self.auth {
            Some(RemoteWriteAuth::Basic { password, .. }) => Some(password),
            Some(RemoteWriteAuth::Bearer { token }) => Some(token),
            Some(RemoteWriteAuth::OAuth2 { client_secret, .. }) => Some(client_secret),
            None => None,
        };
        let tls = self
            .tls
            .iter()
            .flat_map(|t| [t.ca.as_ref(), t.cert.as_ref(), t.key.as_ref()]);
        auth.into_iter().chain(tls.flatten()).collect()
    }
}

/// `prometheus.thanos`: the sidecar beside each Prometheus replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thanos {
    /// The Secret key holding Thanos' object storage configuration (`objstore.yml`). Absent: the
    /// sidecar only serves the query layer (no upload).
    pub object_storage: Option<SecretRef>,
    /// The global query endpoint (a Thanos Query or Querier) Grafana reads instead of this
    /// Prometheus.
    pub query_url: Option<String>,
    pub image: String,
}

/// How Prometheus or Alertmanager is reached from outside the cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct External {
    /// `--web.external-url`: the address links in alerts and notifications point at.
    pub url: Option<String>,
    pub ingress: Option<super::Ingress>,
}

impl External {
    /// The external URL given, or the one the ingress serves.
    pub fn url(&self) -> Option<String> {
        self.url.clone().or_else(|| {
            self.ingress.as_ref().map(|i| {
                let scheme = if i.tls_secret.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}/", i.host)
            })
        })
    }
}

/// A declared reader of Prometheus from outside the stack (`prometheus.consumers`): KEDA, a
/// metrics adapter, an external Grafana, Thanos Query. Its NetworkPolicy lets them in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Consumer {
    /// Pods of a namespace (all of them, or those with these labels).
    Pods {
        namespace: String,
        pod_labels: BTreeMap<String, String>,
    },
    /// Addresses outside the cluster's pods (another cluster's Grafana, a VPN).
    Cidr(String),
}
