//! The parts of Prometheus' configuration and pod that reach beyond it: the `remote_write`
//! section, the Thanos sidecar, and the Secrets both read (mounted under
//! [`PROMETHEUS_SECRETS_DIR`]).

use serde_json::{Value, json};

use super::prometheus::service_job_name;
use crate::spec::scale_out::{RemoteWrite, RemoteWriteAuth, SeriesKind, Thanos, Tls};
use crate::spec::{SecretRef, Spec};

/// Where the Prometheus pod mounts the Secret keys its remote_write and Thanos sidecar read, as
/// `<secret>/<key>`.
pub const PROMETHEUS_SECRETS_DIR: &str = "/etc/prometheus/secrets";
/// The Thanos sidecar's gRPC StoreAPI port, which Thanos Query connects to.
pub const THANOS_GRPC_PORT: u16 = 10901;
const THANOS_HTTP_PORT: u16 = 10902;

fn secret_file(secret: &SecretRef) -> String {
    format!("{PROMETHEUS_SECRETS_DIR}/{}/{}", secret.secret, secret.key)
}

/// The `remote_write` section of prometheus.yml (an empty list when there is none).
pub fn remote_write_section(spec: &Spec) -> Value {
    Value::Array(
        spec.prometheus
            .remote_write
            .iter()
            .map(|target| remote_write(spec, target))
            .collect(),
    )
}

fn remote_write(spec: &Spec, target: &RemoteWrite) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("name".into(), json!(target.name));
    out.insert("url".into(), json!(target.url));
    match &target.auth {
        Some(RemoteWriteAuth::Basic { username, password }) => {
            out.insert(
                "basic_auth".into(),
                json!({"username": username, "password_file": secret_file(password)}),
            );
        }
        Some(RemoteWriteAuth::Bearer { token }) => {
            out.insert(
                "authorization".into(),
                json!({"type": "Bearer", "credentials_file": secret_file(token)}),
            );
        }
        Some(RemoteWriteAuth::OAuth2 {
            client_id,
            client_secret,
            token_url,
            scopes,
            endpoint_params,
        }) => {
            let mut oauth = json!({
                "client_id": client_id,
                "client_secret_file": secret_file(client_secret),
                "token_url": token_url,
            });
            if !scopes.is_empty() {
                oauth["scopes"] = json!(scopes);
            }
            if !endpoint_params.is_empty() {
                oauth["endpoint_params"] = json!(endpoint_params);
            }
            out.insert("oauth2".into(), oauth);
        }
        None => {}
    }
    if let Some(tls) = &target.tls {
        out.insert("tls_config".into(), tls_config(tls));
    }
    if !target.headers.is_empty() {
        out.insert("headers".into(), json!(target.headers));
    }
    if !target.queue.is_empty() {
        out.insert("queue_config".into(), json!(target.queue));
    }
    let mut relabel = series_filter(spec, &target.series);
    relabel.extend(target.write_relabel.iter().cloned());
    if !relabel.is_empty() {
        out.insert("write_relabel_configs".into(), Value::Array(relabel));
    }
    Value::Object(out)
}

fn tls_config(tls: &Tls) -> Value {
    let mut out = serde_json::Map::new();
    for (key, secret) in [
        ("ca_file", &tls.ca),
        ("cert_file", &tls.cert),
        ("key_file", &tls.key),
    ] {
        if let Some(secret) = secret {
            out.insert(key.into(), json!(secret_file(secret)));
        }
    }
    if let Some(name) = &tls.server_name {
        out.insert("server_name".into(), json!(name));
    }
    if tls.insecure_skip_verify {
        out.insert("insecure_skip_verify".into(), json!(true));
    }
    Value::Object(out)
}

/// The one `keep` rule that sends only the series of `kinds` (nothing when every series goes):
/// recorded series by their `level:metric:operation` names, the services' by their jobs.
fn series_filter(spec: &Spec, kinds: &[SeriesKind]) -> Vec<Value> {
    if kinds.is_empty() {
        return Vec::new();
    }
    let mut names = Vec::new();
    let mut jobs: Vec<String> = Vec::new();
    for kind in kinds {
        match kind {
            SeriesKind::Recorded => names.push(".+:.+".to_string()),
            SeriesKind::Services => {
                jobs.extend(
                    spec.services
                        .iter()
                        .map(|s| regex::escape(&service_job_name(s))),
                );
                if spec.teams.iter().any(|t| !t.namespaces.is_empty()) {
                    jobs.push(regex::escape(super::prometheus::LABELLED_PODS_JOB));
                }
            }
        }
    }
    // Matched against `__name__;job`: a recorded name with any job, or any name of the jobs.
    let mut alternatives = Vec::new();
    if !names.is_empty() {
        alternatives.push(format!("(?:{});.*", names.join("|")));
    }
    if !jobs.is_empty() {
        alternatives.push(format!(".*;(?:{})", jobs.join("|")));
    }
    if alternatives.is_empty() {
        // Services asked for, but the spec declares none: nothing of theirs to send.
        alternatives.push("$^".into());
    }
    vec![json!({
        "source_labels": ["__name__", "job"],
        "separator": ";",
        "regex": alternatives.join("|"),
        "action": "keep",
    })]
}

/// The Prometheus arguments Thanos needs: blocks of two hours, never compacted locally, so the
/// sidecar uploads each block once and the compactor works on the bucket.
pub fn thanos_prometheus_args(thanos: &Thanos) -> Vec<String> {
    if thanos.object_storage.is_none() {
        return Vec::new();
    }
    vec![
        "--storage.tsdb.min-block-duration=2h".into(),
        "--storage.tsdb.max-block-duration=2h".into(),
    ]
}

/// The Thanos sidecar container beside Prometheus: serves the StoreAPI to Thanos Query and, with
/// an object storage configuration, uploads every block.
pub fn thanos_sidecar(thanos: &Thanos, image: &str) -> Value {
    let mut args = vec![
        "sidecar".to_string(),
        "--tsdb.path=/prometheus".into(),
        "--prometheus.url=http://127.0.0.1:9090".into(),
        format!("--grpc-address=:{THANOS_GRPC_PORT}"),
        format!("--http-address=:{THANOS_HTTP_PORT}"),
    ];
    if let Some(storage) = &thanos.object_storage {
        args.push(format!("--objstore.config-file={}", secret_file(storage)));
    }
    let mut mounts = vec![json!({"name": "data", "mountPath": "/prometheus"})];
    if thanos.object_storage.is_some() {
        mounts.push(
            json!({"name": "secrets", "mountPath": PROMETHEUS_SECRETS_DIR, "readOnly": true}),
        );
    }
    json!({
        "name": "thanos-sidecar",
        "image": image,
        "args": args,
        "ports": [
            {"name": "grpc", "containerPort": THANOS_GRPC_PORT},
            {"name": "thanos-http", "containerPort": THANOS_HTTP_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/-/ready", "port": "thanos-http"},
            "periodSeconds": 10,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    })
}
