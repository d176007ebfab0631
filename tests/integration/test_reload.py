"""Config reload: valid → invalid → valid, by file change, SIGHUP and POST /-/reload (P12, §b 43).

After each step, from the exporter's /metrics: ``cpm_config_last_reload_successful`` (1 → 0 →
1), the price in use (``cpm_gpu_price_usd_per_hour``, and the money actually charged per
GPU-second) stays the last good config's while the file is invalid, and ``cpm_config_hash``
follows the config in use.

The exporter also polls the file's (mtime, size, inode) every tick. To prove that SIGHUP and
POST /-/reload do the reloading, those tests rewrite the file in place with the same size
and put its mtime back, so the poll cannot see the change; the test checks that it did not.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SIZE = 1024  # every config below is padded to this many bytes
PRICE_A, PRICE_B = "3.00", "3.75"
PRICE = ("cpm_gpu_price_usd_per_hour", {"hardware": "H100", "capacity_class": "on_demand"})


def config(price: str, *, broken: str = "") -> bytes:
    """A valid config at ``price`` $/GPU-h, or one made invalid in the way ``broken`` names."""
    gpus = f"H100: {{on_demand: {price}}}"
    top = "pricing"
    if broken == "syntax":
        gpus = f"H100: {{on_demand: {price}"  # unclosed flow mapping
    elif broken == "negative":
        gpus = f"H100: {{on_demand: -{price}}}"
    elif broken == "unknown_field":
        top = "pricng"
    text = (
        "node: reload-node\n"
        "tick_seconds: 0.25\n"
        "window_seconds: 5\n"
        "limits: {scrape_timeout_seconds: 0.25}\n"
        f"{top}:\n"
        "  catalogue: false\n"
        f"  gpus: {{{gpus}}}\n"
        "inventory:\n"
        "  gpus: [{hardware: H100, count: 2, capacity: on_demand}]\n"
    ).encode()
    assert len(text) < SIZE - 2
    return text + b"#" * (SIZE - len(text) - 1) + b"\n"


def config_hash(data: bytes) -> float:
    """What cpm_config_hash exports: the first 48 bits of the file's SHA-256."""
    return float(int(hashlib.sha256(data).hexdigest()[:12], 16))


def write_unseen(path: Path, data: bytes) -> None:
    """Rewrite ``path`` in place without changing its size, inode or mtime."""
    st = path.stat()
    assert len(data) == st.st_size
    with path.open("r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def state(exporter: Any) -> tuple[float, float, float]:
    """(last reload successful, $/GPU-h in use, config hash)."""
    s = exporter.samples()
    name, labels = PRICE
    return (
        s.get("cpm_config_last_reload_successful"),
        s.get(name, **labels),
        s.get("cpm_config_hash"),
    )


def charged_usd_per_gpu_hour(exporter: Any) -> float:
    """Money charged per GPU-hour between two ticks (all GPUs are idle: no workloads)."""
    first = exporter.next_tick()
    second = exporter.next_tick(after=int(first.get("cpm_ticks_total")))
    cost = second.total("cpm_cost_usd_total", component="gpu") - first.total(
        "cpm_cost_usd_total", component="gpu"
    )
    seconds = second.total("cpm_gpu_seconds_total") - first.total("cpm_gpu_seconds_total")
    return cost / seconds * 3600


@pytest.fixture
def started(tmp_path: Path, exporter_process) -> Iterator[tuple[Any, Path]]:
    path = tmp_path / "config.yaml"
    path.write_bytes(config(PRICE_A))
    exporter = exporter_process(path)
    try:
        assert state(exporter) == (1.0, float(PRICE_A), config_hash(config(PRICE_A)))
        yield exporter, path
    finally:
        exporter.stop()


def wait_state(exporter: Any, wait_for, expected: tuple[float, float, float]) -> None:
    wait_for(lambda: state(exporter) == expected, 10, what=f"(successful, price, hash) == {expected}")


def check_invalid_keeps_last_good(exporter: Any) -> None:
    assert state(exporter) == (0.0, float(PRICE_A), config_hash(config(PRICE_A)))
    assert charged_usd_per_gpu_hour(exporter) == pytest.approx(float(PRICE_A), rel=1e-4)
    assert exporter.alive()


def test_reload_on_file_change(started, wait_for) -> None:
    exporter, path = started
    path.write_bytes(config(PRICE_B, broken="syntax"))
    wait_for(lambda: state(exporter)[0] == 0.0, 10, what="the poll to load the broken file")
    check_invalid_keeps_last_good(exporter)
    path.write_bytes(config(PRICE_B))
    wait_state(exporter, wait_for, (1.0, float(PRICE_B), config_hash(config(PRICE_B))))
    assert charged_usd_per_gpu_hour(exporter) == pytest.approx(float(PRICE_B), rel=1e-4)


def test_reload_on_sighup(started, wait_for) -> None:
    exporter, path = started
    write_unseen(path, config(PRICE_B, broken="negative"))
    after = exporter.next_tick()
    exporter.next_tick(after=int(after.get("cpm_ticks_total")) + 2)
    assert state(exporter)[0] == 1.0, "the file poll saw a change with the same mtime, size and inode"
    os.kill(exporter.pid, signal.SIGHUP)
    wait_for(lambda: state(exporter)[0] == 0.0, 10, what="SIGHUP to load the invalid file")
    check_invalid_keeps_last_good(exporter)
    write_unseen(path, config(PRICE_B))
    os.kill(exporter.pid, signal.SIGHUP)
    wait_state(exporter, wait_for, (1.0, float(PRICE_B), config_hash(config(PRICE_B))))

    # A storm of SIGHUPs: still alive and ticking, no leaked threads or file descriptors. (A handler
    # that set a threading.Event deadlocked here: it re-entered the lock its own thread held.)
    threads = len(os.listdir(f"/proc/{exporter.pid}/task"))
    fds = len(os.listdir(f"/proc/{exporter.pid}/fd"))
    # The shell's builtin kill sends them faster than a Python loop, so some land mid-wait.
    storm = f"i=0; while [ $i -lt 3000 ]; do kill -HUP {exporter.pid}; i=$((i+1)); done"
    subprocess.run(["bash", "-c", storm], check=True, timeout=60)
    ticks = int(exporter.samples().get("cpm_ticks_total"))
    exporter.next_tick(after=ticks + 3)
    assert exporter.alive()
    assert exporter.get("/healthz")[0] == 200
    assert state(exporter) == (1.0, float(PRICE_B), config_hash(config(PRICE_B)))
    assert len(os.listdir(f"/proc/{exporter.pid}/task")) <= threads + 2
    assert len(os.listdir(f"/proc/{exporter.pid}/fd")) <= fds + 2
    assert "Traceback" not in exporter.log_path.read_text()


def test_reload_on_post(started, wait_for) -> None:
    exporter, path = started
    write_unseen(path, config(PRICE_B, broken="unknown_field"))
    status, body = exporter.post("/-/reload")
    assert status == 500
    text = body.decode()
    assert "unknown field 'pricng'" in text and "did you mean 'pricing'" in text, text
    wait_for(lambda: state(exporter)[0] == 0.0, 10, what="the failed reload to show in /metrics")
    check_invalid_keeps_last_good(exporter)
    write_unseen(path, config(PRICE_B))
    status, body = exporter.post("/-/reload")
    assert (status, body) == (200, b"config reloaded\n")
    wait_state(exporter, wait_for, (1.0, float(PRICE_B), config_hash(config(PRICE_B))))
    assert exporter.post("/-/reload") == (200, b"config unchanged\n")
    assert charged_usd_per_gpu_hour(exporter) == pytest.approx(float(PRICE_B), rel=1e-4)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_exporter_cleanly(started, signum: int) -> None:
    """Taken by the signal thread (no Python handler): the loop wakes, stops, and exits 0, even
    when the stop lands in the middle of a SIGHUP storm."""
    exporter, _ = started
    storm = f"for i in $(seq 200); do kill -HUP {exporter.pid}; done; kill -{int(signum)} {exporter.pid}"
    subprocess.run(["bash", "-c", storm], check=True, timeout=30)
    assert exporter.proc.wait(timeout=10) == 0, exporter.log()
    assert "Traceback" not in exporter.log_path.read_text()
