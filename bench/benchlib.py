#!/usr/bin/env python3
"""Helpers for bench/router-load.sh (standard library only, loopback only).

  benchlib.py freeport
      print a free TCP port on 127.0.0.1 (bind to port 0, read it back, close)
  benchlib.py wait-ready URL --pid PID --timeout SECONDS [--log FILE]
      poll GET URL every 50 ms until it answers 200; fail at once if PID exits, or at the deadline
  benchlib.py fill --format webhook|am --url URL [--token T] [--alerts N] [--batch B] [--services S] [--conns C]
      POST N distinct firing alerts, B per request, over S services, on C keep-alive connections; prints JSON
  benchlib.py rss PID [--timeout SECONDS]
      read VmRSS/VmHWM from /proc/PID/status, polling until VmRSS is stable; prints JSON
  benchlib.py am-count URL
      print how many alerts Alertmanager holds (URL: its /api/v2/alerts)
  benchlib.py summary RESULTS_DIR
      print the markdown summary of the JSON results in RESULTS_DIR
"""

import argparse
import hashlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def die(msg):
    print(f"benchlib: {msg}", file=sys.stderr)
    sys.exit(1)


def cmd_freeport(_args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def pid_alive(pid):
    # a zombie (exited, not yet reaped by the shell) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmd_wait_ready(args):
    host = urllib.parse.urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        die(f"refusing non-loopback URL {args.url}")
    deadline = time.monotonic() + args.timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if args.pid and not pid_alive(args.pid):
            die(f"process {args.pid} exited before {args.url} was ready ({last})")
        try:
            with urllib.request.urlopen(args.url, timeout=1) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    die(f"{args.url} not ready after {args.timeout}s ({last})")


# ---------------------------------------------------------------------------------------------------------------
# fill: many distinct alerts

GENERATOR = "http://prometheus.bench:9090/graph?g0.expr=up%3D%3D0&g0.tab=1"


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def fill_bodies(fmt, total, batch, services):
    """Yield (body_bytes, n_alerts). Every request is one whole alert group (alertname, service) with `batch`
    members that appear nowhere else, so every alert is a distinct active member of exactly one group:
    total/batch groups, spread round-robin over `services` services (alertname MemAlertNNNN)."""
    now = time.time()
    starts, ends_am = iso(now - 60), iso(now + 3 * 3600)
    n_req = (total + batch - 1) // batch
    for r in range(n_req):
        svc = f"mem-svc-{r % services:03d}"
        alertname = f"MemAlert{r // services:04d}"
        first = r * batch
        count = min(batch, total - first)
        alerts = []
        for i in range(first, first + count):
            labels = {
                "alertname": alertname,
                "instance": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:8080",
                "job": "kubernetes-pods",
                "namespace": "bench",
                "pod": f"{svc}-pod-{i:06d}",
                "service": svc,
                "severity": "warning",
                "team": "bench",
            }
            annotations = {
                "summary": f"{svc} pod {i} is unhealthy",
                "runbook_url": "https://runbooks.example/MemAlert",
            }
            if fmt == "am":
                alerts.append({"labels": labels, "annotations": annotations, "startsAt": starts,
                               "endsAt": ends_am, "generatorURL": GENERATOR})
            else:
                fp = hashlib.sha256("\xff".join(f"{k}={v}" for k, v in sorted(labels.items())).encode()).hexdigest()
                alerts.append({"status": "firing", "labels": labels, "annotations": annotations,
                               "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
                               "generatorURL": GENERATOR, "fingerprint": fp[:16]})
        if fmt == "am":
            body = alerts
        else:
            common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
            common_ann = {k: v for k, v in alerts[0]["annotations"].items()
                          if all(a["annotations"].get(k) == v for a in alerts)}
            body = {
                "receiver": "stackgen-router",
                "status": "firing",
                "alerts": alerts,
                "groupLabels": {"alertname": alertname, "service": svc},
                "commonLabels": common,
                "commonAnnotations": common_ann,
                "externalURL": "http://alertmanager.bench:9093",
                "version": "4",
                "groupKey": '{}:{alertname="%s", service="%s"}' % (alertname, svc),
                "truncatedAlerts": 0,
            }
        yield (json.dumps(body, separators=(",", ":")) + "\n").encode(), count


def cmd_fill(args):
    u = urllib.parse.urlsplit(args.url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        die(f"refusing non-loopback URL {args.url}")
    bodies = list(fill_bodies(args.format, args.alerts, args.batch, args.services))
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    lock = threading.Lock()
    state = {"next": 0, "ok_requests": 0, "ok_alerts": 0, "bad": {}, "first_bad": None, "errors": 0}
    deadline = time.monotonic() + args.timeout

    def worker():
        conn = None
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= len(bodies) or time.monotonic() > deadline:
                break
            body, count = bodies[i]
            for attempt in range(2):  # one reconnect if the server closed the keep-alive connection
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                    conn.request("POST", u.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    with lock:
                        if 200 <= resp.status < 300:
                            state["ok_requests"] += 1
                            state["ok_alerts"] += count
                        else:
                            state["bad"][resp.status] = state["bad"].get(resp.status, 0) + 1
                            if state["first_bad"] is None:
                                state["first_bad"] = f"{resp.status} {data[:300]!r}"
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as e:
                    if conn is not None:
                        conn.close()
                        conn = None
                    if attempt == 1:
                        with lock:
                            state["errors"] += 1
                            if state["first_bad"] is None:
                                state["first_bad"] = f"error: {e}"
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(args.conns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - t0
    out = {
        "requests": len(bodies),
        "alerts": sum(c for _, c in bodies),
        "ok_requests": state["ok_requests"],
        "ok_alerts": state["ok_alerts"],
        "non_2xx_by_status": {str(k): v for k, v in state["bad"].items()},
        "errors": state["errors"],
        "first_failure": state["first_bad"],
        "elapsed_s": round(elapsed, 3),
        "timed_out": state["next"] < len(bodies),
    }
    print(json.dumps(out))
    if out["ok_alerts"] != out["alerts"]:
        print(f"benchlib: fill: only {out['ok_alerts']} of {out['alerts']} alerts were accepted "
              f"(non-2xx {out['non_2xx_by_status']}, errors {out['errors']}, first: {out['first_failure']})",
              file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------------------------

def read_status(pid):
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0])  # kB
    return vals


def cmd_rss(args):
    """VmRSS once it is stable: sampled every 250 ms until two successive samples 1 s apart differ by < 1%
    (background processing or a GC right after the last request may still move it), or the deadline."""
    deadline = time.monotonic() + args.timeout
    samples = []
    while True:
        if not pid_alive(args.pid):
            die(f"process {args.pid} is gone")
        s = read_status(args.pid)
        samples.append((time.monotonic(), s["VmRSS"]))
        ref = [v for (t, v) in samples if samples[-1][0] - t >= 1.0]
        if ref and abs(samples[-1][1] - ref[-1]) <= 0.01 * ref[-1]:
            stable = True
            break
        if time.monotonic() >= deadline:
            stable = False
            break
        time.sleep(0.25)
    print(json.dumps({"vmrss_kb": s["VmRSS"], "vmhwm_kb": s["VmHWM"], "stable": stable,
                      "first_vmrss_kb": samples[0][1]}))


def cmd_am_count(args):
    """Number of alerts Alertmanager holds (GET /api/v2/alerts: active, silenced, inhibited and unprocessed).
    Its metric alertmanager_alerts{state="active"} is no use here: alerts stay "unprocessed" until their group's
    first flush (group_wait). Building this answer costs Alertmanager memory, so call it after reading VmRSS."""
    with urllib.request.urlopen(args.url, timeout=120) as r:
        print(len(json.load(r)))


# ---------------------------------------------------------------------------------------------------------------
# summary

def fmt_num(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def fmt_ms(us):
    if us is None:
        return "n/a"
    return f"{us / 1000:.2f}"


def cmd_summary(args):
    d = args.dir
    runs, mems = {}, {}
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if name.startswith("run-") and name.endswith(".json"):
            with open(path) as f:
                r = json.load(f)
            runs[(r["target"], r["alerts_per_request"], r["phase"])] = r
        elif name.startswith("mem-") and name.endswith(".json"):
            with open(path) as f:
                m = json.load(f)
            mems[m["target"]] = m
    targets = [t for t in ("router", "router-pg", "router-pg2", "alertmanager")
               if any(k[0] == t for k in runs) or t in mems]
    sizes = sorted({k[1] for k in runs})

    def derived(r):
        dur = r["duration_s"] or 1e-9
        rps = r["requests"] / dur
        ok_rps = r["ok_2xx"] / dur
        return rps, ok_rps * r["alerts_per_request"]

    print("### Throughput (max load)\n")
    print("With several runs per body size, the run with the median req/s is shown (all its figures come from "
          "that one run); the last column lists the req/s of every run.\n")
    print("| target | alerts/req | threads x conns | req/s | accepted alerts/s (2xx) | p50 ms | p99 ms "
          "| non-2xx | socket errors | req/s of all runs |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for t in targets:
        for n in sizes:
            r = runs.get((t, n, "max"))
            if not r:
                continue
            rps, aps = derived(r)
            errs = r["errors_connect"] + r["errors_read"] + r["errors_write"] + r["errors_timeout"]
            all_rps = ", ".join(fmt_num(x) for x in r.get("rps_runs", []))
            print(f"| {t} | {n} | {r['threads']} x {r['connections']} | {fmt_num(rps)} | {fmt_num(aps)} "
                  f"| {fmt_ms(r['lat_p50_us'])} | {fmt_ms(r['lat_p99_us'])} | {r['non_2xx']} | {errs} | {all_rps} |")

    print("\n### Latency at about half of the max rate\n")
    print("Paced with wrk's delay() hook to half the (median) max req/s above, on fewer connections. Latency is timed "
          "from when each request is sent (like wrk, not wrk2: no coordinated-omission correction).\n")
    print("| target | alerts/req | threads x conns | target req/s | achieved req/s | accepted alerts/s "
          "| p50 ms | p99 ms | non-2xx | note |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for t in targets:
        for n in sizes:
            r = runs.get((t, n, "half"))
            if not r:
                continue
            rps, aps = derived(r)
            note = ""
            if rps < 0.9 * r["rate_target"]:
                note = "below target: too few connections for this latency (raise HALF_CONNECTIONS)"
            elif rps > 1.1 * r["rate_target"]:
                note = "above target"
            print(f"| {t} | {n} | {r['threads']} x {r['connections']} | {fmt_num(r['rate_target'])} "
                  f"| {fmt_num(rps)} | {fmt_num(aps)} | {fmt_ms(r['lat_p50_us'])} | {fmt_ms(r['lat_p99_us'])} "
                  f"| {r['non_2xx']} | {note} |")

    if mems:
        print("\n### Memory with many active alerts\n")
        print("| target | alerts posted (accepted) | VmRSS before fill MiB | VmRSS after fill MiB | VmHWM MiB "
              "| fill time s | note |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for t in targets:
            m = mems.get(t)
            if not m:
                continue
            note = []
            if m["fill"]["ok_alerts"] != m["fill"]["alerts"]:
                note.append(f"NOT ALL ACCEPTED: non-2xx {m['fill']['non_2xx_by_status']}, "
                            f"errors {m['fill']['errors']}, first: {m['fill']['first_failure']}")
            if m.get("active_reported") is not None:
                note.append(f"alerts the server holds afterwards (fill + load runs): {m['active_reported']:,}")
            if not m["after"].get("stable", True):
                note.append("VmRSS still moving at the deadline")
            print(f"| {t} | {m['fill']['alerts']:,} ({m['fill']['ok_alerts']:,}) "
                  f"| {m['before']['vmrss_kb'] / 1024:.1f} | {m['after']['vmrss_kb'] / 1024:.1f} "
                  f"| {m['after']['vmhwm_kb'] / 1024:.1f} | {m['fill']['elapsed_s']:.1f} | {'; '.join(note)} |")

    print("\n### Ratios router / alertmanager\n")
    print("| alerts/req | accepted alerts/s ratio (max load) |")
    print("| ---: | ---: |")
    for n in sizes:
        a, b = runs.get(("router", n, "max")), runs.get(("alertmanager", n, "max"))
        ratio = "n/a"
        if a and b and derived(b)[1] > 0:
            ratio = f"{derived(a)[1] / derived(b)[1]:.2f}"
        print(f"| {n} | {ratio} |")
    if any(k[0].startswith("router-pg") for k in runs):
        print("\n### PostgreSQL store / embedded store\n")
        print("| target | alerts/req | accepted alerts/s ratio (max load) | p99 ms (max load) | p99 ms, embedded |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for t in ("router-pg", "router-pg2"):
            for n in sizes:
                a, b = runs.get((t, n, "max")), runs.get(("router", n, "max"))
                if not a:
                    continue
                ratio = f"{derived(a)[1] / derived(b)[1]:.2f}" if b and derived(b)[1] > 0 else "n/a"
                print(f"| {t} | {n} | {ratio} | {fmt_ms(a['lat_p99_us'])} "
                      f"| {fmt_ms(b['lat_p99_us']) if b else 'n/a'} |")
    if "router" in mems and "alertmanager" in mems:
        ra = mems["router"]["after"]["vmrss_kb"] / mems["alertmanager"]["after"]["vmrss_kb"]
        print(f"\nVmRSS after fill, router / alertmanager: {ra:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport").set_defaults(fn=cmd_freeport)
    w = sub.add_parser("wait-ready")
    w.add_argument("url")
    w.add_argument("--pid", type=int, default=0)
    w.add_argument("--timeout", type=float, default=30)
    w.set_defaults(fn=cmd_wait_ready)
    f = sub.add_parser("fill")
    f.add_argument("--format", choices=("webhook", "am"), required=True)
    f.add_argument("--url", required=True)
    f.add_argument("--token", default=os.environ.get("BENCH_TOKEN", ""))
    f.add_argument("--alerts", type=int, default=100000)
    f.add_argument("--batch", type=int, default=100)
    f.add_argument("--services", type=int, default=100)
    f.add_argument("--conns", type=int, default=4)
    f.add_argument("--timeout", type=float, default=600, help="overall deadline in seconds")
    f.set_defaults(fn=cmd_fill)
    r = sub.add_parser("rss")
    r.add_argument("pid", type=int)
    r.add_argument("--timeout", type=float, default=10)
    r.set_defaults(fn=cmd_rss)
    a = sub.add_parser("am-count")
    a.add_argument("url")
    a.set_defaults(fn=cmd_am_count)
    s = sub.add_parser("summary")
    s.add_argument("dir")
    s.set_defaults(fn=cmd_summary)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
