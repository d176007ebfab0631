"""One exporter, one healthy vLLM target and many bad ones (reliability P6, §b 1-2, 12, 18-22).

Every target is served by a small loopback server in this test, backed by a SimEngine whose
counters the test drives request by request. The scenario runs once per module:

1. good: every target serves a valid payload; the test serves batch 1 on every SimEngine and
   waits until the exporter counted it exactly;
2. bad: each bad target switches to its failure mode and, under the same lock, its SimEngine
   serves batch 2 (visible only once the target is good again); the healthy target keeps
   serving; the ``reset`` target restarts and serves batch 2; /metrics is kept every tick;
3. recovered: every target is good again; the exporter must count batch 2 without loss.

A bad scrape must be discarded whole: ``cpm_target_up`` 0, ``cpm_target_scrape_errors_total``
with the right reason, and the pod's token counters frozen, neither reset nor advanced.
"""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from exporter.demo.simulation import SimEngine

MODEL = "Qwen/Qwen2.5-32B-Instruct"
TIMEOUT_S = 0.5  # limits.scrape_timeout_seconds (= tick_seconds)
MAX_BODY = 8 * 2**20  # limits.max_body_bytes
SLOW_S = 2.0  # the slow target answers after this long
RESETS = "cpm_upstream_resets_total"
BAD_TICKS = 6  # ticks observed in the bad phase

# Bad targets: failure mode -> the reason the exporter must count.
REASONS = {
    "malformed": "parse",  # a broken sample line
    "truncated": "truncated",  # the body stops short of its Content-Length
    "cut": "truncated",  # no Content-Length; the connection closes in the middle of a line
    "html": "content_type",  # an HTML error page with status 200
    "slow": "timeout",  # answers after SLOW_S > limits.scrape_timeout_seconds
    "trickle": "timeout",  # slowloris: 1 byte every 50 ms, never finishes
    "huge": "body_too_large",  # 50 MiB, no Content-Length: the cap applies while reading
    "huge_declared": "body_too_large",  # 50 MiB with its Content-Length
    "gzip_bomb": "body_too_large",  # 1 MB of gzip that inflates to 1 GiB (cap counted inflated)
    "http_503": "http_status",
    "refused": "connect",  # nothing listens (never a server: no tokens ever)
}
SERVED = ["healthy", "reset", "nan", *(m for m in REASONS if m != "refused")]


def _huge_body() -> bytes:
    line = b"# " + b"x" * 1021 + b"\n"  # 1 KiB comment lines: valid exposition text
    return line * (50 * 1024)  # 50 MiB


def _gzip_bomb() -> bytes:
    """128 gzip members of 8 MiB of zeros each (RFC 1952 allows members back to back)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    member = c.compress(bytes(8 * 2**20)) + c.flush()
    return member * 128


@dataclass
class Target:
    name: str
    sim: SimEngine
    mode: str = "good"
    lock: threading.Lock = field(default_factory=threading.Lock)
    input_tokens: int = 0
    output_tokens: int = 0

    def serve(self, rng: random.Random, n: int) -> None:
        for _ in range(n):
            prompt, output = rng.randint(1, 4000), rng.randint(1, 1000)
            self.sim.serve(prompt, output)
            self.input_tokens += prompt
            self.output_tokens += output


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The exporter scrapes every target at once: with the default backlog of 5, Linux drops
    # the extra SYNs and the client retries after 1 s, so good targets would time out.
    request_queue_size = 128


class BadTargets:
    """One ThreadingHTTPServer on 127.0.0.1; target ``name`` answers at ``/name/metrics``."""

    def __init__(self, names: list[str]) -> None:
        self.targets = {n: Target(n, SimEngine(MODEL)) for n in names}
        self.closing = threading.Event()
        self.huge = _huge_body()
        self.bomb = _gzip_bomb()
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.httpd.handle_error = lambda request, client_address: None  # peers hang up on purpose
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="bad-targets", daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}/metrics"

    def stop(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bad = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the connection closes after each response

            def do_GET(self) -> None:
                target = bad.targets.get(self.path.split("/")[1])
                if target is None:
                    self.send_error(404)
                    return
                with target.lock:  # the mode and the counters are read together
                    mode, text = target.mode, target.sim.text()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the exporter gave up
                    bad.respond(self, mode, text)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def respond(self, h: BaseHTTPRequestHandler, mode: str, text: str) -> None:
        def send(
            body: bytes, ctype: str = "text/plain; version=0.0.4", status: int = 200, **headers: str
        ) -> None:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            for k, v in headers.items():
                h.send_header(k.replace("_", "-"), v)
            h.end_headers()
            h.wfile.write(body)

        prompt_line = re.compile(r"^(vllm:prompt_tokens_total\{[^}]*)\} \S+$", re.M)
        if mode in ("good", "slow"):
            if mode == "slow" and self.closing.wait(SLOW_S):
                return
            body = text.encode()
            send(body, Content_Length=str(len(body)))
        elif mode == "malformed":  # the closing brace of the label set is missing
            send(prompt_line.sub(r"\1 12.0", text).encode())
        elif mode == "nan":
            send(prompt_line.sub(r"\1} NaN", text).encode())
        elif mode == "truncated":
            body = text.encode()
            send(body[: len(body) // 2], Content_Length=str(len(body)))
        elif mode == "cut":
            send(text[: text.index("vllm:prompt_tokens_total{") + 30].encode())
        elif mode == "html":
            page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
            send(page, "text/html; charset=utf-8")
        elif mode == "trickle":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain; version=0.0.4")
            h.end_headers()
            h.wfile.write(b"# ")
            for _ in range(200):  # at most 10 s
                if self.closing.wait(0.05):
                    return
                h.wfile.write(b"x")
                h.wfile.flush()
        elif mode == "huge":
            send(self.huge)
        elif mode == "huge_declared":
            send(self.huge, Content_Length=str(len(self.huge)))
        elif mode == "gzip_bomb":
            send(self.bomb, Content_Encoding="gzip", Content_Length=str(len(self.bomb)))
        elif mode == "http_503":
            send(b"overloaded\n", "text/plain", status=503)
        else:
            raise AssertionError(mode)


def config_text(urls: dict[str, str]) -> str:
    lines = [
        "node: bad-node",
        f"tick_seconds: {TIMEOUT_S}",
        "window_seconds: 10",
        # 8 MiB, not the default 32 MiB: inflating 32 MiB takes ~0.15 s of CPU, too close to
        # the 0.5 s deadline on a 2-core CI machine (the bomb would fail as "timeout").
        f"limits: {{scrape_timeout_seconds: {TIMEOUT_S}, max_body_bytes: {MAX_BODY}}}",
        "pricing:",
        "  catalogue: false",
        "  gpus: {H100: {on_demand: 2.00}}",
        "inventory:",
        f"  gpus: [{{hardware: H100, count: {len(urls)}, capacity: on_demand}}]",
        "  workloads:",
    ]
    for i, (name, url) in enumerate(urls.items()):
        lines.append(
            f'    - {{pod: {name}, namespace: bad, model: "{MODEL}", gpus: ["{i}"], '
            f'targets: [{{url: "{url}", name: {name}, server: vllm}}]}}'
        )
    return "\n".join(lines) + "\n"


@dataclass
class Scenario:
    exporter: Any  # conftest.Exporter
    targets: dict[str, Target]
    batch1: dict[str, tuple[int, int]]  # target -> (input, output) tokens after phase 1
    good: list[Any] = field(default_factory=list)  # conftest.Samples, one per tick
    bad: list[Any] = field(default_factory=list)
    recovered: list[Any] = field(default_factory=list)

    @property
    def all(self) -> list[Any]:
        return [*self.good, *self.bad, *self.recovered]


def tokens(samples: Any, pod: str) -> tuple[float, float]:
    return (
        samples.total("cpm_tokens_total", pod=pod, direction="input"),
        samples.total("cpm_tokens_total", pod=pod, direction="output"),
    )


def errors(samples: Any, target: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value for s in samples.find("cpm_target_scrape_errors_total", target=target)
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, exporter_process, free_port, wait_for) -> Iterator[Scenario]:
    server = BadTargets(SERVED)
    targets = server.targets
    urls = {name: server.url(name) for name in SERVED}
    urls["refused"] = f"http://127.0.0.1:{free_port()}/metrics"
    config = Path(tmp_path_factory.mktemp("bad-targets")) / "config.yaml"
    config.write_text(config_text(urls))
    rng = random.Random(11)
    exporter = None
    try:
        exporter = exporter_process(config)  # ready: its baseline tick saw every server at 0

        def counted(phase: list[Any]) -> Callable[[], bool]:
            def check() -> bool:
                s = exporter.next_tick()
                phase.append(s)
                return all(tokens(s, t.name) == (t.input_tokens, t.output_tokens) for t in targets.values())

            return check

        # 1. good
        good: list[Any] = []
        for t in targets.values():
            t.serve(rng, 20)
        wait_for(counted(good), 15, interval=0, what="the exporter to count batch 1 on every target")
        batch1 = {n: (t.input_tokens, t.output_tokens) for n, t in targets.items()}
        # 2. bad
        for name, t in targets.items():
            with t.lock:
                if name == "reset":
                    t.sim.restart()
                elif name != "healthy":
                    t.mode = name
                t.serve(rng, 20)
        bad = [exporter.next_tick()]
        for _ in range(BAD_TICKS - 1):
            targets["healthy"].serve(rng, 3)  # the healthy target keeps serving
            bad.append(exporter.next_tick(after=int(bad[-1].get("cpm_ticks_total"))))
        # 3. recovered
        for t in targets.values():
            with t.lock:
                t.mode = "good"
        recovered: list[Any] = []
        wait_for(counted(recovered), 15, interval=0, what="the exporter to count batch 2 after recovery")
        yield Scenario(exporter, targets, batch1, good, bad, recovered)
    finally:
        if exporter is not None:
            exporter.stop()
        server.stop()


def test_healthy_target_keeps_counting(scenario: Scenario) -> None:
    seen = [tokens(s, "healthy") for s in scenario.bad]
    assert seen == sorted(seen) and seen[-1] > seen[0], (
        f"healthy tokens did not grow during the bad phase: {seen}"
    )
    healthy = scenario.targets["healthy"]
    assert tokens(scenario.recovered[-1], "healthy") == (healthy.input_tokens, healthy.output_tokens)
    for s in scenario.all:
        assert s.get("cpm_target_up", target="healthy") == 1
    assert errors(scenario.all[-1], "healthy") == {}


@pytest.mark.parametrize("mode", sorted(REASONS))
def test_bad_target_is_down_with_its_reason(scenario: Scenario, mode: str) -> None:
    last = scenario.bad[-1]
    assert last.get("cpm_target_up", target=mode) == 0
    reasons = errors(last, mode)
    assert set(reasons) == {REASONS[mode]}, f"{mode}: {reasons}\n{scenario.exporter.log()}"
    assert reasons[REASONS[mode]] >= BAD_TICKS - 1


@pytest.mark.parametrize("mode", sorted([*REASONS, "nan"]))
def test_bad_target_tokens_stay_frozen(scenario: Scenario, mode: str) -> None:
    """Neither reset to 0 nor advanced, on every tick of the bad phase."""
    frozen = scenario.batch1.get(mode, (0, 0))
    assert [tokens(s, mode) for s in scenario.bad] == [frozen] * len(scenario.bad)


@pytest.mark.parametrize("mode", sorted([*(m for m in REASONS if m != "refused"), "nan"]))
def test_bad_target_resumes_without_loss(scenario: Scenario, mode: str) -> None:
    t = scenario.targets[mode]
    last = scenario.recovered[-1]
    assert tokens(last, mode) == (t.input_tokens, t.output_tokens)
    assert last.get("cpm_target_up", target=mode) == 1


def test_a_nan_token_counter_downs_the_target_with_its_reason(scenario: Scenario) -> None:
    """A token counter we cannot read makes the scrape unusable: the user alerts on cpm_target_up."""
    last = scenario.bad[-1]
    assert last.get("cpm_target_up", target="nan") == 0
    reasons = errors(last, "nan")
    assert set(reasons) == {"bad_value"} and reasons["bad_value"] >= BAD_TICKS - 1, reasons


def test_counter_reset_is_counted_and_total_is_exact(scenario: Scenario) -> None:
    t = scenario.targets["reset"]
    last = scenario.bad[-1]
    assert last.get(RESETS, target="reset") == 1
    assert tokens(last, "reset") == (t.input_tokens, t.output_tokens)
    assert [s.labels["target"] for s in last.find(RESETS) if s.value > 0] == ["reset"]


def test_our_counters_never_decrease(scenario: Scenario) -> None:
    previous: dict[Any, float] = {}
    for i, s in enumerate(scenario.all):
        current = s.counters()
        for key, value in current.items():
            assert value >= previous.get(key, 0.0), f"tick {i}: {key} went from {previous[key]} to {value}"
        previous = current


def test_no_tick_failed(scenario: Scenario) -> None:
    log = scenario.exporter.log()
    assert "tick failed" not in log and "Traceback" not in log, log


def test_promtool_check_metrics_is_clean(scenario: Scenario, promtool: str) -> None:
    text = scenario.bad[-1].text  # every error and reset series is present
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
