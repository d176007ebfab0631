"""A fleet in one Prometheus: N nodes' series, the rule groups' evaluation time, memory, dashboard queries.

Run from the repo root: ``python bench/bench_fleet.py [--nodes 100 300 1000] [--minutes 10]``
(needs Debian's ``prometheus`` and ``promtool``; writes under a temporary directory, listens on 127.0.0.1).

Each node is ``bench_tick.py``'s busy node (8 H100, 8 vLLM targets with 15 models, 200 pods): its real
``/metrics`` after warm-up, with the ``node`` and ``instance`` labels made per node, and every counter
advancing by its own per-tick increase. The samples (one a minute over ``--minutes``) are written as
OpenMetrics and loaded with ``promtool tsdb create-blocks-from openmetrics``; a Prometheus then opens those
blocks with ``deploy/rules/cpm-exporter.rules.yml`` evaluated every 15 s, and the script prints, per N:
head/block series, Prometheus's resident memory, each rule group's last evaluation time, and the time of
every dashboard panel query (median and worst), all measured in this run.
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
import urllib.parse
import urllib.request
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


def openmetrics(path: Path, nodes: int, minutes: int, end_s: int) -> int:
    series, types = one_node()
    written = 0
    with path.open("w") as out:
        for name in types:  # no TYPE lines: OpenMetrics names counters without _total, ours keep it
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
                        out.write(f"{s_name}{{{inner}}} {v!r} {t}\n")
                        written += 1
        out.write("# EOF\n")
    return written


def api(port: int, path: str, **params: str) -> tuple[dict[str, object], float]:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = json.loads(r.read())
    return body, time.perf_counter() - began


def measure(nodes: int, minutes: int, work: Path) -> None:
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
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                api(port, "/api/v1/rules")
                break
            except OSError:
                time.sleep(1)
        time.sleep(35)  # two evaluations of the 15-s groups
        groups, _ = api(port, "/api/v1/rules")
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{prom.pid}/status").read_text()).group(1))  # type: ignore[union-attr]
        heads, _ = api(port, "/api/v1/query", query="count({__name__=~'cpm_.*'})")
        from grafana.queries import panel_queries

        times = []
        for _, _, expr in panel_queries():
            _, took = api(port, "/api/v1/query", query=expr)
            times.append(took)
        per_node = samples // nodes // (minutes + 1)
        print(f"--- {nodes} nodes x {per_node} series ({samples:,} samples over {minutes} min)")
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
        print(
            f"  {len(times)} panel queries: median {median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms"
        )
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[100])
    ap.add_argument("--minutes", type=int, default=10, help="minutes of history, one sample a minute")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nodes:
            measure(n, args.minutes, Path(tmp))


if __name__ == "__main__":
    main()
