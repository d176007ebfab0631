"""A simulated inference server: each engine's real exposition, with counters that move.

Used by the demo (traffic from a load profile) and by the tests (traffic driven request
by request, so the truth is known exactly). Names, labels and types follow vLLM 0.33.0
(``../shared/reference/vllm.md``), and the other engines' as in their reference files
(``sim_expositions``); the values are made up.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Generic, Protocol, TypeVar

from exporter.demo.expositions import EXPOSITIONS

ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)  # fmt: skip
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


@dataclass(frozen=True, slots=True)
class Load:
    """A demo traffic profile: mean request rate with a slow swell, and per-request shape."""

    requests_per_second: float
    prompt_tokens: int
    output_tokens: int
    itl_seconds: float  # inter-token latency
    prefill_seconds: float
    restart_every_seconds: float = 0.0  # 0: never restarts
    cache_hit_ratio: float = 0.0  # share of prompt tokens served from the prefix cache
    seed: int = 0


def go_float(x: float) -> str:
    """A number as prometheus_client prints it (Go style: 1e+06, 12.0, +Inf)."""
    if x == math.inf:
        return "+Inf"
    s = repr(float(x))
    dot = s.find(".")
    if x > 0 and dot > 6:  # large whole numbers go to an exponent, as Go's %g would
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return s


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        for i, le in enumerate(self.buckets):
            if value <= le:
                self.counts[i] += times
        self.sum += value * times
        self.count += times

    def buckets_lines(self, name: str, labels: str, number: Callable[[float], str] = go_float) -> list[str]:
        """The ``_bucket`` lines, +Inf last (``labels`` may be empty)."""
        sep = "," if labels else ""
        counts = [*self.counts, self.count]
        return [
            f'{name}_bucket{{{labels}{sep}le="{number(le)}"}} {number(c)}'
            for le, c in zip((*self.buckets, math.inf), counts, strict=True)
        ]

    def lines(self, name: str, labels: str) -> list[str]:
        """prometheus_client's order: buckets, count, sum."""
        out = self.buckets_lines(name, labels)
        out.append(f"{name}_count{{{labels}}} {self.count:.1f}")
        return [*out, f"{name}_sum{{{labels}}} {self.sum!r}"]


# Per-request token-length buckets (prompt, output), each engine's defaults in its reference file.
VLLM_LENGTHS = (
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
)  # max_model_len 8192
SGLANG_LENGTHS = (100.0, 300.0, 500.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0,
                  8000.0, 9000.0, 10000.0, 12500.0, 15000.0, 17500.0, 20000.0, 22500.0, 25000.0, 27500.0, 30000.0,
                  35000.0, 40000.0, 60000.0, 80000.0, 100000.0, 200000.0, 300000.0, 400000.0, 600000.0, 800000.0,
                  1e6, 1.1e6)  # fmt: skip


def _tgi_lengths(max_tokens: int) -> tuple[float, ...]:
    """TGI: a hundredth of the limit, times 1..100, in floating point (4095.0000000000005)."""
    return tuple(max_tokens / 100 * k for k in range(1, 101))


LENGTH_BUCKETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "vllm": (VLLM_LENGTHS, VLLM_LENGTHS),
    "sglang": (SGLANG_LENGTHS, SGLANG_LENGTHS),
    "tgi": (_tgi_lengths(4095), _tgi_lengths(4096)),  # max_input_tokens, max_total_tokens
    "triton": ((10.0, 50.0, 100.0, 500.0, 1000.0),) * 2,
    "llamacpp": ((), ()),  # no per-request histograms
}


class SimEngine:
    """One inference engine's counters. Thread-safe; ``text()`` renders the exposition of
    ``engine`` (vllm, sglang, tgi, triton, llamacpp) from the same state."""

    def __init__(
        self, model: str, load: Load | None = None, *, engine: str = "vllm", clock: float | None = None
    ) -> None:
        self.model = model
        self.engine = engine
        self.load = load
        self._lock = threading.Lock()
        self._rng = random.Random(load.seed if load else 0)
        now = time.time() if clock is None else clock
        self._started = now
        self._last_advance = now
        self._owed = 0.0
        self._zero(now)

    def _zero(self, now: float) -> None:
        self.created = now
        self.prompt_tokens = 0
        self.cached_tokens = 0  # part of prompt_tokens served from the prefix cache
        self.generation_tokens = 0
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        self.running = 0.0
        self.itl = Histogram(ITL_BUCKETS)
        self.prefill = Histogram(LATENCY_BUCKETS)
        self.decode = Histogram(LATENCY_BUCKETS)
        prompt_buckets, output_buckets = LENGTH_BUCKETS[self.engine]
        self.prompt_lengths = Histogram(prompt_buckets)
        self.output_lengths = Histogram(output_buckets)
        self.tpot_sum = 0.0  # Σ per-request mean time per output token (TGI's histogram)
        self.itl_requests = 0  # requests with more than one output token (that have a TPOT)

    def serve(
        self,
        prompt: int,
        output: int,
        *,
        itl: float = 0.03,
        prefill: float = 0.2,
        reason: str = "stop",
        cached: int = 0,
    ) -> None:
        """Account one finished request (``cached`` of its prompt tokens were cache hits)."""
        with self._lock:
            self._serve(prompt, output, itl, prefill, reason, cached)

    def _serve(
        self, prompt: int, output: int, itl: float, prefill: float, reason: str, cached: int = 0
    ) -> None:
        self.prompt_tokens += prompt
        self.cached_tokens += min(cached, prompt)
        self.generation_tokens += output
        self.success[reason] += 1
        if output > 1:
            self.itl.observe(itl, output - 1)
            self.tpot_sum += itl
            self.itl_requests += 1
        self.prefill.observe(prefill)
        self.decode.observe(itl * max(output - 1, 0))
        self.prompt_lengths.observe(prompt)
        self.output_lengths.observe(output)

    def restart(self, now: float | None = None) -> None:
        """The server restarts: every counter back to zero, with a new ``_created``."""
        with self._lock:
            self._zero(time.time() if now is None else now)

    def advance(self, now: float) -> None:
        """Demo traffic: serve what the load profile owes since the last call."""
        if self.load is None:
            return
        with self._lock:
            self._advance(self.load, now)

    def _advance(self, load: Load, now: float) -> None:
        elapsed = max(0.0, now - self._last_advance)
        self._last_advance = now
        if load.restart_every_seconds and now - self.created >= load.restart_every_seconds:
            self._zero(now)
        swell = 1.0 + 0.35 * math.sin((now - self._started) / 45.0 + load.seed)
        self._owed += load.requests_per_second * swell * elapsed
        while self._owed >= 1.0:
            self._owed -= 1.0
            jitter = self._rng.uniform(0.6, 1.4)
            out = max(1, round(load.output_tokens * jitter))
            reason = "length" if jitter > 1.35 else "stop"
            itl = load.itl_seconds * self._rng.uniform(0.8, 1.25) * swell
            prompt = round(load.prompt_tokens * self._rng.uniform(0.5, 1.5))
            cached = round(prompt * load.cache_hit_ratio)
            self._serve(prompt, out, itl, load.prefill_seconds, reason, cached)
        latency = load.prefill_seconds + load.output_tokens * load.itl_seconds
        self.running = round(load.requests_per_second * swell * latency, 1)

    @property
    def utilization(self) -> float:
        """A plausible GPU busy fraction for the demo's GPUs: grows with concurrency."""
        return min(0.97, 0.04 + self.running / 120.0)

    def text(self) -> str:
        """This engine's real exposition of the current counters."""
        with self._lock:
            return EXPOSITIONS[self.engine](self)


class Exposing(Protocol):
    """What SimServer serves: a simulated engine, or a gateway in front of some."""

    model: str

    def advance(self, now: float) -> None: ...

    def text(self) -> str: ...


E = TypeVar("E", bound=Exposing)


class SimServer(Generic[E]):
    """Serves one SimEngine's (or SimGateway's) /metrics on loopback, as the real server would."""

    def __init__(self, sim: E, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        handler = _handler(sim)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"sim-{sim.model}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/metrics"

    def start(self) -> SimServer[E]:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(sim: Exposing) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10.0

        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            sim.advance(time.time())
            body = sim.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
