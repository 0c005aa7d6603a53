"""Writes storm.json: the alert storm `stackgen demo` replays.

Webhook bodies in the format Alertmanager 0.25 sends (version 4, grouped by cluster, namespace,
service and alertname), as an HA pair of two Alertmanagers would deliver them: every body
arrives twice, once from each replica. Three services of examples/stack.yaml fail pod by pod:
checkout fails and recovers, search-api stays slow, ingress-nginx partly recovers.

Run `python3 stack/demo/storm.py` to regenerate; the output is deterministic.
"""

import hashlib
import json
import os

# The first webhook arrives at this time; every alert started before it.
FIRST_WEBHOOK = "2026-11-20T09:00:03Z"
FIRST_WEBHOOK_SECONDS = 3
CLUSTER = "do-fra1-prod"


def at(seconds):
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    minutes, secs = divmod(whole, 60)
    return f"2026-11-20T09:{minutes:02d}:{secs:02d}.{millis:03d}Z"


def pods(prefix, count):
    return [f"{prefix}-{i:02d}" for i in range(count)]


SERVICES = {
    "checkout": {
        "namespace": "shop",
        "team": "payments",
        "alertname": "CheckoutPodErrors",
        "severity": "critical",
        "summary": "checkout pod {pod} fails {pct}% of its requests.",
        "pods": pods("checkout-7d4b9c6f5", 40),
        "port": 8080,
    },
    "search-api": {
        "namespace": "search",
        "team": "search",
        "alertname": "SearchApiPodSlow",
        "severity": "warning",
        "summary": "search-api pod {pod} answers in {pct}0 ms at the 99th percentile.",
        "pods": pods("search-api-6c8f7d9b4", 24),
        "port": 9100,
    },
    "ingress-nginx": {
        "namespace": "ingress-nginx",
        "team": "platform",
        "alertname": "IngressPodReloadFailing",
        "severity": "warning",
        "summary": "ingress-nginx pod {pod} failed to reload its configuration {pct} times.",
        "pods": pods("ingress-nginx-controller-5f9b8c7d6", 6),
        "port": 10254,
    },
}


def alert(service, index, firing, now):
    s = SERVICES[service]
    pod = s["pods"][index]
    labels = {
        "alertname": s["alertname"],
        "cluster": CLUSTER,
        "namespace": s["namespace"],
        "service": service,
        "team": s["team"],
        "severity": s["severity"],
        "job": f"{s['namespace']}/{service}",
        "pod": pod,
        "instance": f"10.244.{index // 8}.{10 + index}:{s['port']}",
    }
    fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "status": "firing" if firing else "resolved",
        "labels": labels,
        "annotations": {
            "summary": s["summary"].format(pod=pod, pct=12 + index % 9),
            "runbook_url": "https://github.com/stackgen/stackgen/blob/main/docs/runbooks.md",
        },
        "startsAt": at(index * 0.05),
        "endsAt": "0001-01-01T00:00:00Z" if firing else at(FIRST_WEBHOOK_SECONDS + now),
        "generatorURL": f"http://prometheus-0:9090/graph?g0.expr={s['alertname']}",
        "fingerprint": fingerprint,
    }


def body(service, firing, resolved, now, replica):
    s = SERVICES[service]
    group = {
        "alertname": s["alertname"],
        "cluster": CLUSTER,
        "namespace": s["namespace"],
        "service": service,
    }
    alerts = [alert(service, i, True, now) for i in firing]
    alerts += [alert(service, i, False, now) for i in resolved]
    common = dict(group, team=s["team"], severity=s["severity"], job=f"{s['namespace']}/{service}")
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "stackgen-router",
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": f"http://alertmanager-{replica}.alertmanager-headless.monitoring.svc:9093",
        "alerts": alerts,
    }


# (seconds after the first webhook, service, firing pod indexes, resolved pod indexes)
TIMELINE = [
    (0.0, "checkout", range(0, 16), []),
    (0.8, "search-api", range(0, 10), []),
    (1.5, "checkout", range(0, 40), []),
    (2.5, "search-api", range(0, 24), []),
    (3.0, "ingress-nginx", range(0, 6), []),
    (5.0, "checkout", range(25, 40), range(0, 25)),
    (6.0, "ingress-nginx", range(3, 6), range(0, 3)),
    (6.5, "checkout", [], range(0, 40)),
]

webhooks = []
for seconds, service, firing, resolved in TIMELINE:
    for replica, delay in [(0, 0.0), (1, 0.15)]:
        webhooks.append(
            {
                "at_ms": int(round((seconds + delay) * 1000)),
                "from": f"alertmanager-{replica}",
                "body": body(service, list(firing), list(resolved), seconds, replica),
            }
        )

storm = {
    "first_webhook_at": FIRST_WEBHOOK,
    "description": "Three services of examples/stack.yaml failing pod by pod, sent by an HA pair of Alertmanagers.",
    "webhooks": webhooks,
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "storm.json"), "w") as out:
    json.dump(storm, out, indent=1, ensure_ascii=False)
    out.write("\n")
