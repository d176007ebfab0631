"""A fleet in one central store: N nodes' series, the rules' evaluation time, memory, dashboard queries.

Run from the repo root: ``python bench/bench_fleet.py [--nodes 100 300 1000] [--minutes 10]
[--store prometheus victoria-metrics]`` (needs Debian's ``prometheus`` and ``promtool``, and
``victoria-metrics`` for that store; writes under a temporary directory, listens on 127.0.0.1).

Each node is ``bench_tick.py``'s busy node (8 H100, 8 vLLM targets with 15 models, 200 pods): its real
``/metrics`` after warm-up, with the ``node`` and ``instance`` labels made per node, and every counter
advancing by its own per-tick increase. The samples (one a minute over ``--minutes``) are written as
OpenMetrics and loaded with ``promtool tsdb create-blocks-from openmetrics``; a Prometheus then opens those
blocks with ``deploy/rules/cpm-exporter.rules.yml`` evaluated every 15 s, and the script prints, per N:
head/block series, Prometheus's resident memory, each rule group's last evaluation time, and the time of
every dashboard panel query (median, worst, the three slowest). The daily chargeback is also timed as
a query both ways: ``increase([1d])`` over every cost series, and the five-minute tile the rules record.

VictoriaMetrics: the same samples imported through ``/api/v1/import/prometheus``; vmalert evaluates a
rule by sending its expression as an instant query, so each recording rule and alert expression is
timed that way, beside the panel queries and the store's resident memory. All measured in this run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_tick import WARMUP, Node, pricing
from exporter.exposition.render import render
from exporter.exposition.status import ExportView
from exporter.meter.ledger import Meter

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "cpm-exporter.rules.yml"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def one_node() -> tuple[list[tuple[str, str, float, bool]], dict[str, str]]:
    """(name, labels, value, is_counter) per series of one busy node, and the type of each family."""
    node, meter, prices = Node(), Meter("gpu-node-1"), pricing()
    for _ in range(WARMUP):
        snap = meter.tick(node.next(), prices, 60)
    text = render(ExportView(snap, node.status(prices, WARMUP))).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    series = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#") and not m.group(1).startswith("process_"):
            name, labels, value = m.group(1), m.group(2) or "{}", float(m.group(3))
            series.append((name, labels, value, types.get(name) == "counter"))
    return series, {k: v for k, v in types.items() if not k.startswith("process_")}


def openmetrics(
    path: Path, nodes: int, minutes: int, end_s: int, *, ms: bool = False, only: str | None = None
) -> int:
    """The fleet's samples; ``ms``: Prometheus text with millisecond stamps (VictoriaMetrics' import);
    ``only``: one family."""
    series, types = one_node()
    written = 0
    with path.open("w") as out:
        for name in (
            [only] if only else types
        ):  # no TYPE lines: OpenMetrics names counters without _total, ours keep it
            for n in range(nodes):
                node = f"gpu-node-{n:04d}"
                for s_name, labels, value, counter in series:
                    if s_name != name:
                        continue
                    inner = labels[1:-1].replace('node="gpu-node-1"', f'node="{node}"')
                    inner = (inner + "," if inner else "") + f'instance="{node}:9433",job="cpm-exporter"'
                    for k in range(minutes + 1):
                        t = end_s - (minutes - k) * 60
                        v = value * (1 + k / 10) if counter else value
                        out.write(f"{s_name}{{{inner}}} {v!r} {t * 1000 if ms else t}\n")
                        written += 1
        if not ms:
            out.write("# EOF\n")
    return written


def wait_ready(probe: Callable[[], object], seconds: float) -> None:
    """Until ``probe`` answers (a store opening its blocks), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except (OSError, SystemExit, json.JSONDecodeError):
            time.sleep(0.5)


CHARGEBACK = {
    "increase([1d]) over every cost series": "sum by (cluster, team) (increase(cpm_cost_usd_total[1d]))",
    "the 5-minute tile (rules: team:cpm_cost_usd:increase5m)": "sum by (cluster, team) (increase(cpm_cost_usd_total[5m]))",
}


def panels(port: int) -> None:
    """Every dashboard panel query, timed; then the chargeback both ways."""
    from grafana.queries import panel_queries

    timed = []
    for uid, title, expr in panel_queries():
        _, took = api(port, "/api/v1/query", query=expr)
        timed.append((took, f"{uid} / {title}"))
    times = [t for t, _ in timed]
    print(
        f"  {len(times)} panel queries: median {median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms"
    )
    print(
        "    slowest: "
        + "; ".join(f"{name} {t * 1000:.0f} ms" for t, name in sorted(timed, reverse=True)[:3])
    )
    for what, expr in CHARGEBACK.items():
        _, took = api(port, "/api/v1/query", query=expr)
        print(f"  chargeback as a query, {what}: {took * 1000:.0f} ms")


def rule_exprs() -> list[tuple[str, str, str]]:
    """(group, name, expr) of every rule, as vmalert sends them to the store."""
    import yaml

    doc = yaml.safe_load(RULES.read_text())
    return [
        (g["name"], r.get("record") or r.get("alert"), r["expr"]) for g in doc["groups"] for r in g["rules"]
    ]


def api(port: int, path: str, **params: str) -> tuple[dict[str, object], float]:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:  # the store's reason, not only its status
        raise SystemExit(f"{url[:200]}: HTTP {e.code}: {e.read()[:500]!r}") from e
    return body, time.perf_counter() - began


def measure_prometheus(nodes: int, minutes: int, work: Path) -> None:
    end_s = int(time.time())
    om = work / f"fleet-{nodes}.om"
    began = time.perf_counter()
    samples = openmetrics(om, nodes, minutes, end_s)
    gen_s = time.perf_counter() - began
    data = work / f"data-{nodes}"
    began = time.perf_counter()
    subprocess.run([shutil.which("promtool") or "promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                   check=True, capture_output=True)  # fmt: skip
    load_s = time.perf_counter() - began
    om.unlink()
    config = work / "prometheus.yml"
    config.write_text(json.dumps({"global": {"evaluation_interval": "15s"}, "rule_files": [str(RULES)]}))
    port = 19090 + nodes % 1000
    prom = subprocess.Popen([shutil.which("prometheus") or "prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # Groups evaluate every 15 s (the chargeback group every 5 m: it may not have run yet).
        wait_ready(lambda: api(port, "/api/v1/rules"), 60)
        time.sleep(35)  # two evaluations of the 15-s groups
        groups, _ = api(port, "/api/v1/rules")
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{prom.pid}/status").read_text()).group(1))  # type: ignore[union-attr]
        heads, _ = api(port, "/api/v1/query", query="count({__name__=~'cpm_.*'})")
        per_node = samples // nodes // (minutes + 1)
        print(f"--- Prometheus, {nodes} nodes x {per_node} series ({samples:,} samples over {minutes} min)")
        print(f"  generate {gen_s:.1f} s, promtool create-blocks {load_s:.1f} s")
        print(
            f"  series in Prometheus: {heads['data']['result'][0]['value'][1]}; resident memory {rss / 1024:.0f} MiB"
        )  # type: ignore[index]
        for g in groups["data"]["groups"]:  # type: ignore[index]
            if not g["lastEvaluation"] or g["lastEvaluation"] < "2000":
                print(f"  rule group {g['name']:<28} not evaluated yet (interval {g['interval']:.0f} s)")
                continue
            print(f"  rule group {g['name']:<28} {g['evaluationTime'] * 1000:8.1f} ms per evaluation")
            slow = sorted(((r["evaluationTime"], r["name"]) for r in g["rules"]), reverse=True)
            print("    slowest: " + ", ".join(f"{name} {t * 1000:.0f} ms" for t, name in slow[:3]))
        panels(port)
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def measure_victoria_metrics(nodes: int, minutes: int, work: Path) -> None:
    end_s = int(time.time())
    text = work / f"fleet-{nodes}.prom"
    samples = openmetrics(text, nodes, minutes, end_s, ms=True)
    port = 18428 + nodes % 1000
    vm = subprocess.Popen([shutil.which("victoria-metrics") or "victoria-metrics", f"-storageDataPath={work / f'vm-{nodes}'}",
                           f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=1d", "-search.latencyOffset=0s",
                           "-search.disableCache", "-search.maxUniqueTimeseries=10000000",
                           "-search.maxSamplesPerQuery=10000000000", "-loggerLevel=ERROR"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_ready(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read(), 60)
        began = time.perf_counter()
        with text.open("rb") as body:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/import/prometheus", data=body,
                                             method="POST", headers={"Content-Length": str(text.stat().st_size)})  # fmt: skip
            urllib.request.urlopen(request, timeout=3600).read()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/force_flush", timeout=600).read()
        load_s = time.perf_counter() - began
        text.unlink()
        heads, _ = api(port, "/api/v1/query", query="count({__name__=~'cpm_.*'})")
        per_node = samples // nodes // (minutes + 1)
        print(
            f"--- VictoriaMetrics, {nodes} nodes x {per_node} series ({samples:,} samples over {minutes} min)"
        )
        print(f"  import {load_s:.1f} s; series: {heads['data']['result'][0]['value'][1]}")  # type: ignore[index]
        by_group: dict[str, list[tuple[float, str]]] = {}
        for group, name, expr in rule_exprs():
            _, took = api(port, "/api/v1/query", query=expr)
            by_group.setdefault(group, []).append((took, name))
        for group, timed in by_group.items():
            slow = sorted(timed, reverse=True)[:3]
            print(f"  rules {group:<28} {sum(t for t, _ in timed) * 1000:8.1f} ms as queries; slowest: "
                  + ", ".join(f"{name} {t * 1000:.0f} ms" for t, name in slow))  # fmt: skip
        panels(port)
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{vm.pid}/status").read_text()).group(1))  # type: ignore[union-attr]
        print(f"  resident memory {rss / 1024:.0f} MiB (after the queries)")
    finally:
        vm.terminate()
        vm.wait(timeout=60)


def measure_chargeback_history(nodes: int, hours: int, work: Path) -> None:
    """The daily chargeback with a whole day behind it: only the cost series, ``hours`` of one-minute
    samples, and both forms timed as queries at the end of that history."""
    end_s = int(time.time())
    om = work / "cost.om"
    samples = openmetrics(om, nodes, hours * 60, end_s, only="cpm_cost_usd_total")
    data = work / f"cost-{nodes}-{hours}"
    subprocess.run([shutil.which("promtool") or "promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                   check=True, capture_output=True)  # fmt: skip
    om.unlink()
    config = work / "prometheus-cost.yml"
    config.write_text(json.dumps({"global": {"evaluation_interval": "1h"}}))
    port = 19500 + nodes % 100
    prom = subprocess.Popen([shutil.which("prometheus") or "prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
                             "--storage.tsdb.retention.time=30d", "--log.level=error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_ready(lambda: api(port, "/api/v1/query", query="1"), 120)
        series = samples // (hours * 60 + 1)
        print(
            f"--- the chargeback over {hours} h of history: {nodes} nodes, {series:,} cost series, {samples:,} samples"
        )
        for what, expr in CHARGEBACK.items():
            best = min(api(port, "/api/v1/query", query=expr, time=str(end_s))[1] for _ in range(3))
            print(f"  {what}: {best * 1000:.0f} ms (best of 3)")
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[100])
    ap.add_argument("--minutes", type=int, default=10, help="minutes of history, one sample a minute")
    ap.add_argument("--store", nargs="+", default=["prometheus"], choices=["prometheus", "victoria-metrics"])
    ap.add_argument("--chargeback-hours", type=int, default=0,
                    help="instead: only the cost series with this many hours of history, and the daily "
                         "chargeback timed both ways (Prometheus)")  # fmt: skip
    args = ap.parse_args()
    stores = {"prometheus": measure_prometheus, "victoria-metrics": measure_victoria_metrics}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nodes:
            if args.chargeback_hours:
                measure_chargeback_history(n, args.chargeback_hours, Path(tmp))
                continue
            for store in args.store:
                stores[store](n, args.minutes, Path(tmp))


if __name__ == "__main__":
    main()
