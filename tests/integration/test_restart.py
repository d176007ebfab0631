"""An exporter restart loses no money and no tokens (issue 14): the real process, stopped by SIGTERM
or killed by SIGKILL while a simulated vLLM goes on serving, then started again on the same state file.

After the restart: every counter went on from its value (no reset), the tokens served while the
exporter was down are counted, and the bill covers the whole wall-clock span, downtime included.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.demo.simulation import SimEngine, SimServer
from tests.integration.conftest import Exporter

TICK_S = 0.5
USD_PER_GPU_S = 0.001  # $3.60 per GPU-hour
GPUS = 2


def config(tmp: Path, url: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""\
node: restart-node
tick_seconds: {TICK_S}
window_seconds: 5
state_file: {tmp / "state" / "state.json"}
pricing:
  catalogue: false
  gpus: {{H100: {{on_demand: 3.60}}}}
inventory:
  gpus: [{{hardware: H100, count: {GPUS}, capacity: on_demand}}]
  workloads:
    - {{pod: llama-0, namespace: serve, team: search, model: m, gpus: ["0"], targets: [{{url: "{url}", server: vllm}}]}}
"""
    )
    return path


def counted(exporter: Exporter) -> float:
    return exporter.samples().total("cpm_tokens_total", pod="llama-0", direction="input")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restart_continues_counters_counts_the_gap_and_bills_the_downtime(
    tmp_path: Path, exporter_process: Callable[..., Exporter], stop: signal.Signals
) -> None:
    sim = SimEngine("m")
    server = SimServer(sim).start()
    try:
        cfg = config(tmp_path, server.url)
        began = time.time()
        first = exporter_process(cfg)
        ready = time.time()
        for _ in range(10):
            sim.serve(100, 20)
        wait_for("the first 10 requests", lambda: counted(first) == 1000)
        before = first.samples()
        first.proc.send_signal(stop)
        first.proc.wait(timeout=10)
        for _ in range(7):  # served while the exporter is down
            sim.serve(100, 20)
        time.sleep(2.0)
        started = time.time()
        second = exporter_process(cfg)
        print(f"restart: {time.time() - started:.2f} s from spawn to the first tick (/readyz)")
        wait_for("the 7 requests served while down", lambda: counted(second) == 1700)
        asked = time.time()
        after = second.samples()
        done = time.time()
        # No counter went down: Prometheus sees no reset.
        for key, value in before.counters().items():
            if key[0].startswith("cpm_") and key in after.counters():
                assert after.counters()[key] >= value, key
        assert after.total("cpm_requests_total", pod="llama-0") == 17
        # The bill covers the whole span: from the first process's first tick to the last tick,
        # downtime included (without the state it would be short by the 2+ s of downtime).
        billed_s = after.get("cpm_bill_usd_total") / (GPUS * USD_PER_GPU_S)
        assert asked - ready - TICK_S <= billed_s <= done - began + 1e-3, (
            billed_s,
            asked - ready,
            done - began,
        )
        assert "going on from the tick" in second.log()
    finally:
        server.stop()
