//! The families real exporters serve besides the ones the stack reads: cAdvisor's file system,
//! network, memory detail and spec families for every cgroup (and the node's system slices),
//! the API server's request histograms over every resource and verb with its real buckets, its
//! response-size, etcd and storage families, node-exporter's per-CPU, disk, network, memory and
//! kernel statistics, and kube-state-metrics' pod detail. The benchmark of what Prometheus keeps
//! serves them (`Cluster::unread`), so the figures are those of a real cluster's scrapes; the
//! scenarios do not, to stay fast. Names are the exporters' own; values are steady.

use super::cluster::{Sample, leak};

type Labels = Vec<(&'static str, String)>;

fn push(out: &mut Vec<Sample>, name: &'static str, labels: &Labels, value: f64) {
    out.push(Sample {
        name,
        labels: labels.clone(),
        value,
    });
}

fn with(labels: &Labels, extra: &[(&'static str, &str)]) -> Labels {
    let mut labels = labels.clone();
    labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    labels
}

/// The families cAdvisor reports once per cgroup.
const CGROUP_FAMILIES: &[&str] = &[
    "container_cpu_load_average_10s",
    "container_cpu_system_seconds_total",
    "container_cpu_user_seconds_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_file_descriptors",
    "container_last_seen",
    "container_memory_cache",
    "container_memory_failcnt",
    "container_memory_mapped_file",
    "container_memory_max_usage_bytes",
    "container_memory_rss",
    "container_memory_swap",
    "container_memory_usage_bytes",
    "container_oom_events_total",
    "container_processes",
    "container_sockets",
    "container_spec_cpu_period",
    "container_spec_cpu_quota",
    "container_spec_cpu_shares",
    "container_spec_memory_limit_bytes",
    "container_spec_memory_reservation_limit_bytes",
    "container_spec_memory_swap_limit_bytes",
    "container_start_time_seconds",
    "container_threads",
    "container_threads_max",
];

/// The families cAdvisor reports per block device of a container.
const DEVICE_FAMILIES: &[&str] = &[
    "container_fs_inodes_free",
    "container_fs_inodes_total",
    "container_fs_io_current",
    "container_fs_io_time_seconds_total",
    "container_fs_io_time_weighted_seconds_total",
    "container_fs_limit_bytes",
    "container_fs_read_seconds_total",
    "container_fs_reads_bytes_total",
    "container_fs_reads_merged_total",
    "container_fs_reads_total",
    "container_fs_sector_reads_total",
    "container_fs_sector_writes_total",
    "container_fs_usage_bytes",
    "container_fs_write_seconds_total",
    "container_fs_writes_bytes_total",
    "container_fs_writes_merged_total",
    "container_fs_writes_total",
];

/// The families cAdvisor reports per network interface of a pod's cgroup.
const INTERFACE_FAMILIES: &[&str] = &[
    "container_network_receive_bytes_total",
    "container_network_receive_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_receive_packets_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_errors_total",
    "container_network_transmit_packets_dropped_total",
    "container_network_transmit_packets_total",
];

/// One cgroup's unread families; `labels` are its `container`, `id`, `image`, `name`,
/// `namespace`, `pod`; `pod_level`: the pod's cgroup (network counters live there).
pub(super) fn cgroup(labels: &Labels, pod_level: bool, out: &mut Vec<Sample>) {
    for name in CGROUP_FAMILIES {
        push(out, name, labels, 1.0);
    }
    for (failure, scope) in [
        ("pgfault", "container"),
        ("pgfault", "hierarchy"),
        ("pgmajfault", "container"),
        ("pgmajfault", "hierarchy"),
    ] {
        let labels = with(labels, &[("failure_type", failure), ("scope", scope)]);
        push(out, "container_memory_failures_total", &labels, 1.0);
    }
    for state in [
        "iowaiting",
        "running",
        "sleeping",
        "stopped",
        "uninterruptible",
    ] {
        push(
            out,
            "container_tasks_state",
            &with(labels, &[("state", state)]),
            0.0,
        );
    }
    for ulimit in ["max_open_files", "max_processes"] {
        push(
            out,
            "container_ulimits_soft",
            &with(labels, &[("ulimit", ulimit)]),
            1024.0,
        );
    }
    if pod_level {
        for name in INTERFACE_FAMILIES {
            push(out, name, &with(labels, &[("interface", "eth0")]), 1.0);
        }
    } else {
        for device in ["/dev/sda", "/dev/sdb"] {
            let device_labels = with(labels, &[("device", device)]);
            for name in DEVICE_FAMILIES {
                push(out, name, &device_labels, 1.0);
            }
            for operation in ["Async", "Read", "Sync", "Write"] {
                let labels = with(
                    &device_labels,
                    &[("major", "8"), ("minor", "0"), ("operation", operation)],
                );
                push(out, "container_blkio_device_usage_total", &labels, 1.0);
            }
        }
    }
}

/// The node's own cgroups, which cAdvisor reports with no container or pod.
pub(super) fn system_slices(out: &mut Vec<Sample>) {
    for slice in [
        "/",
        "/kubepods",
        "/kubepods/besteffort",
        "/kubepods/burstable",
        "/system.slice",
        "/system.slice/containerd.service",
        "/system.slice/kubelet.service",
        "/system.slice/systemd-journald.service",
        "/system.slice/systemd-logind.service",
        "/system.slice/systemd-networkd.service",
        "/system.slice/systemd-resolved.service",
        "/system.slice/systemd-timesyncd.service",
        "/system.slice/systemd-udevd.service",
        "/system.slice/cron.service",
        "/system.slice/dbus.service",
        "/system.slice/ssh.service",
        "/system.slice/rsyslog.service",
        "/system.slice/chrony.service",
        "/user.slice",
        "/init.scope",
    ] {
        let labels: Labels = vec![
            ("container", String::new()),
            ("id", slice.to_string()),
            ("image", String::new()),
            ("name", String::new()),
            ("namespace", String::new()),
            ("pod", String::new()),
        ];
        cgroup(&labels, slice == "/", out);
        for name in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ] {
            push(out, name, &labels, 1.0);
        }
    }
}

/// The API server's buckets (Kubernetes 1.31) of `apiserver_request_duration_seconds`.
const API_BUCKETS: &[&str] = &[
    "0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5", "2", "3", "4",
    "5", "6", "8", "10", "15", "20", "30", "45", "60", "+Inf",
];
const RESOURCES: &[&str] = &[
    "pods",
    "nodes",
    "services",
    "endpoints",
    "endpointslices",
    "configmaps",
    "secrets",
    "events",
    "namespaces",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "leases",
    "serviceaccounts",
    "persistentvolumeclaims",
    "persistentvolumes",
    "ingresses",
    "networkpolicies",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "storageclasses",
    "customresourcedefinitions",
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "priorityclasses",
    "csinodes",
    "csidrivers",
    "volumeattachments",
    "limitranges",
    "resourcequotas",
    "controllerrevisions",
    "apiservices",
    "flowschemas",
];
const VERBS: &[&str] = &[
    "GET", "LIST", "WATCH", "CREATE", "UPDATE", "PATCH", "DELETE",
];

/// The API server's request histograms over every resource and verb, and its other families.
pub(super) fn api_server(out: &mut Vec<Sample>) {
    for resource in RESOURCES {
        for verb in VERBS {
            let labels: Labels = vec![
                ("component", "apiserver".into()),
                ("dry_run", String::new()),
                ("group", String::new()),
                ("resource", resource.to_string()),
                ("scope", "cluster".into()),
                ("subresource", String::new()),
                ("verb", verb.to_string()),
                ("version", "v1".into()),
            ];
            for (index, le) in API_BUCKETS.iter().enumerate() {
                let value = 10.0 + index as f64;
                let bucket = with(&labels, &[("le", le)]);
                push(
                    out,
                    "apiserver_request_duration_seconds_bucket",
                    &bucket,
                    value,
                );
                push(
                    out,
                    "apiserver_request_sli_duration_seconds_bucket",
                    &bucket,
                    value,
                );
            }
            for name in [
                "apiserver_request_duration_seconds_count",
                "apiserver_request_duration_seconds_sum",
                "apiserver_request_sli_duration_seconds_count",
                "apiserver_request_sli_duration_seconds_sum",
            ] {
                push(out, name, &labels, 33.0);
            }
            for le in [
                "1000", "10000", "100000", "1e+06", "1e+07", "1e+08", "1e+09", "+Inf",
            ] {
                push(
                    out,
                    "apiserver_response_sizes_bucket",
                    &with(&labels, &[("le", le)]),
                    5.0,
                );
            }
            push(
                out,
                "apiserver_request_total",
                &with(&labels, &[("code", "201")]),
                5.0,
            );
        }
        let object = vec![("resource", resource.to_string())];
        push(out, "apiserver_storage_objects", &object, 10.0);
        for operation in ["create", "get", "list", "update", "delete"] {
            for le in [
                "0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5",
                "2", "3", "4", "5", "6", "8", "10", "15", "+Inf",
            ] {
                let labels = with(
                    &object,
                    &[("operation", operation), ("type", "*core.Pod"), ("le", le)],
                );
                push(out, "etcd_request_duration_seconds_bucket", &labels, 3.0);
            }
        }
        for name in [
            "apiserver_watch_events_total",
            "apiserver_longrunning_requests",
            "apiserver_cache_list_total",
        ] {
            push(out, name, &object, 1.0);
        }
    }
}

/// The families node-exporter serves that no rule or dashboard reads, and every CPU mode.
pub(super) fn node_exporter(cores: usize, out: &mut Vec<Sample>) {
    for cpu in 0..cores {
        let cpu_label: Labels = vec![("cpu", cpu.to_string())];
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            push(
                out,
                "node_cpu_seconds_total",
                &with(&cpu_label, &[("mode", mode)]),
                1.0,
            );
        }
        for mode in ["nice", "user"] {
            push(
                out,
                "node_cpu_guest_seconds_total",
                &with(&cpu_label, &[("mode", mode)]),
                0.0,
            );
        }
        for name in [
            "node_schedstat_running_seconds_total",
            "node_schedstat_timeslices_total",
            "node_schedstat_waiting_seconds_total",
            "node_softnet_dropped_total",
            "node_softnet_processed_total",
            "node_softnet_times_squeezed_total",
            "node_cpu_scaling_frequency_hertz",
        ] {
            push(out, name, &cpu_label, 1.0);
        }
    }
    for device in ["eth0", "lo", "cni0", "flannel.1"] {
        let labels: Labels = vec![("device", device.to_string())];
        for name in [
            "node_network_receive_bytes_total",
            "node_network_receive_packets_total",
            "node_network_receive_drop_total",
            "node_network_receive_fifo_total",
            "node_network_receive_frame_total",
            "node_network_receive_multicast_total",
            "node_network_receive_compressed_total",
            "node_network_transmit_bytes_total",
            "node_network_transmit_packets_total",
            "node_network_transmit_drop_total",
            "node_network_transmit_fifo_total",
            "node_network_transmit_colls_total",
            "node_network_transmit_carrier_total",
            "node_network_transmit_compressed_total",
            "node_network_mtu_bytes",
            "node_network_up",
            "node_network_speed_bytes",
            "node_network_transmit_queue_length",
            "node_network_carrier",
            "node_network_info",
        ] {
            push(out, name, &labels, 1.0);
        }
    }
    for device in ["sda", "sdb", "dm-0"] {
        let labels: Labels = vec![("device", device.to_string())];
        for name in [
            "node_disk_reads_completed_total",
            "node_disk_reads_merged_total",
            "node_disk_read_bytes_total",
            "node_disk_read_time_seconds_total",
            "node_disk_writes_completed_total",
            "node_disk_writes_merged_total",
            "node_disk_written_bytes_total",
            "node_disk_write_time_seconds_total",
            "node_disk_io_now",
            "node_disk_io_time_seconds_total",
            "node_disk_io_time_weighted_seconds_total",
            "node_disk_discards_completed_total",
            "node_disk_discards_merged_total",
            "node_disk_discarded_sectors_total",
            "node_disk_discard_time_seconds_total",
            "node_disk_flush_requests_total",
            "node_disk_flush_requests_time_seconds_total",
            "node_disk_info",
        ] {
            push(out, name, &labels, 1.0);
        }
    }
    let none: Labels = Vec::new();
    for stat in [
        "Active",
        "Active_anon",
        "Active_file",
        "AnonHugePages",
        "AnonPages",
        "Bounce",
        "Buffers",
        "Cached",
        "CommitLimit",
        "Committed_AS",
        "DirectMap1G",
        "DirectMap2M",
        "DirectMap4k",
        "Dirty",
        "HardwareCorrupted",
        "HugePages_Free",
        "HugePages_Rsvd",
        "HugePages_Surp",
        "HugePages_Total",
        "Hugepagesize",
        "Inactive",
        "Inactive_anon",
        "Inactive_file",
        "KernelStack",
        "Mapped",
        "MemFree",
        "Mlocked",
        "NFS_Unstable",
        "PageTables",
        "Percpu",
        "SReclaimable",
        "SUnreclaim",
        "ShmemHugePages",
        "ShmemPmdMapped",
        "Shmem",
        "Slab",
        "SwapCached",
        "SwapFree",
        "SwapTotal",
        "Unevictable",
        "VmallocChunk",
        "VmallocTotal",
        "VmallocUsed",
        "Writeback",
        "WritebackTmp",
    ] {
        out.push(Sample {
            name: leak(format!("node_memory_{stat}_bytes")),
            labels: none.clone(),
            value: 1.0,
        });
    }
    for index in 0..120 {
        out.push(Sample {
            name: leak(format!("node_vmstat_counter_{index}")),
            labels: none.clone(),
            value: 1.0,
        });
        out.push(Sample {
            name: leak(format!("node_netstat_counter_{index}")),
            labels: none.clone(),
            value: 1.0,
        });
    }
    for zone in 0..16 {
        let labels: Labels = vec![
            ("zone", format!("thermal_zone{zone}")),
            ("type", "x86_pkg_temp".into()),
        ];
        push(out, "node_thermal_zone_temp", &labels, 40.0);
        let chip: Labels = vec![
            ("chip", format!("platform_coretemp_{zone}")),
            ("sensor", "temp1".into()),
        ];
        push(out, "node_hwmon_temp_celsius", &chip, 40.0);
    }
}

/// kube-state-metrics' pod detail nothing reads; `labels` are the pod's `namespace`, `pod`,
/// `uid`.
pub(super) fn kube_state_pod(labels: &Labels, container: &str, node: &str, out: &mut Vec<Sample>) {
    for name in [
        "kube_pod_created",
        "kube_pod_start_time",
        "kube_pod_status_scheduled_time",
        "kube_pod_status_ready_time",
        "kube_pod_status_container_ready_time",
        "kube_pod_restart_policy",
        "kube_pod_service_account",
        "kube_pod_ips",
        "kube_pod_annotations",
    ] {
        push(out, name, labels, 1.0);
    }
    for condition in ["true", "false", "unknown"] {
        push(
            out,
            "kube_pod_status_scheduled",
            &with(labels, &[("condition", condition)]),
            0.0,
        );
        push(
            out,
            "kube_pod_status_ready",
            &with(labels, &[("condition", condition)]),
            0.0,
        );
    }
    for class in ["BestEffort", "Burstable", "Guaranteed"] {
        push(
            out,
            "kube_pod_status_qos_class",
            &with(labels, &[("qos_class", class)]),
            0.0,
        );
    }
    for (key, effect) in [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    ] {
        push(
            out,
            "kube_pod_tolerations",
            &with(
                labels,
                &[("key", key), ("effect", effect), ("operator", "Exists")],
            ),
            1.0,
        );
    }
    let container_labels = with(labels, &[("container", container)]);
    for name in [
        "kube_pod_container_status_running",
        "kube_pod_container_status_ready",
        "kube_pod_container_status_terminated",
        "kube_pod_container_status_waiting",
        "kube_pod_container_state_started",
    ] {
        push(out, name, &container_labels, 1.0);
    }
    push(
        out,
        "kube_pod_container_info",
        &with(
            &container_labels,
            &[
                ("image", "registry.example.com/app:1"),
                ("image_id", "sha256:0"),
                ("container_id", "containerd://0"),
            ],
        ),
        1.0,
    );
    for resource in ["cpu", "memory"] {
        push(
            out,
            "kube_pod_container_resource_limits",
            &with(&container_labels, &[("resource", resource), ("node", node)]),
            1.0,
        );
    }
}
