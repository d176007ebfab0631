"""Resident memory of an idle exporter process (VmRSS and VmHWM from /proc/<pid>/status).

Run from the repo root: ``python bench/bench_rss.py`` (Linux only; takes ~50 s).

Measures, each as its own subprocess of this interpreter, after ``--wait`` seconds:

1. ``python -m exporter demo --listen 127.0.0.1:<free port> --tick-seconds 1``: the demo,
   with its four simulated vLLM servers running in the same process;
2. ``python -m exporter run --config <tmp>.yaml``: a minimal config (8 H100 on_demand,
   no workloads, no targets, catalogue off), ticking every second;
3. for scale: a bare interpreter that only imports what ``run`` imports, then sleeps.

Each exporter's /metrics is fetched once before reading its RSS, so the figure includes a
served scrape (a 5-s timeout; a failure is printed, not raised).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MIB = 80
MINIMAL_CONFIG = """\
# bench/bench_rss.py: 8 GPUs, no workloads, no targets.
node: bench-node
tick_seconds: 1
window_seconds: 60
pricing:
  catalogue: false
  gpus:
    H100: {on_demand: 4.50}
inventory:
  gpus:
    - {hardware: H100, count: 8, capacity: on_demand}
"""
MODULES = "exporter.cli, exporter.config.load, exporter.runtime.loop, exporter.exposition.server"
IMPORTS_ONLY = f"import time, {MODULES}; time.sleep(3600)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read()
        series = sum(1 for ln in body.split(b"\n") if ln and not ln.startswith(b"#"))
        return f"/metrics {series} series"
    except OSError as e:
        return f"/metrics failed: {e}"


def measure(name: str, argv: list[str], port: int | None, wait_s: float) -> None:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(wait_s)
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            print(f"{name:<32}: exited early with {proc.returncode}\n{err}")
            return
        note = scrape(port) if port is not None else "no HTTP"
        time.sleep(1.0)
        s = status_kib(proc.pid)
        rss, anon, file = s["VmRSS"] / 1024, s["RssAnon"] / 1024, s["RssFile"] / 1024
        print(
            f"{name:<32}: VmRSS {rss:6.1f} MiB (anon {anon:.1f}, file {file:.1f}), "
            f"VmHWM {s['VmHWM'] / 1024:6.1f} MiB, {s['Threads']} threads, {note}"
            + (f"  goal <= {GOAL_MIB}" if port is not None else "")
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--wait", type=float, default=15.0, help="seconds to let each process tick before reading"
    )
    args = ap.parse_args()
    py = sys.executable
    print(f"python {sys.version.split()[0]} ({py}); waiting {args.wait:.0f} s per process")

    port = free_port()
    measure("demo (6 sim servers + training, tick 1 s)", [py, "-m", "exporter", "demo", "--listen", f"127.0.0.1:{port}",
                                                "--tick-seconds", "1"], port, args.wait)  # fmt: skip

    fd, path = tempfile.mkstemp(prefix="cpm-bench-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(MINIMAL_CONFIG)
        port = free_port()
        measure("run (8 GPUs, no targets, 1 s)", [py, "-m", "exporter", "run", "--config", path, "--listen",
                                                   f"127.0.0.1:{port}"], port, args.wait)  # fmt: skip
    finally:
        os.unlink(path)

    measure("imports only (no exporter)", [py, "-c", IMPORTS_ONLY], None, 3.0)


if __name__ == "__main__":
    main()
