"""Count training tokens for cpm-exporter, from inside a training loop.

Dependency-free (standard library only): copy this one file into a training image if the
package is not installed. Call ``add`` once per step with the step's token count; the
counter is served over HTTP for the exporter to scrape, or written to a file that the
exporter reads (batch jobs, shared volumes)::

    from exporter.training import TrainingTokens

    tokens = TrainingTokens()
    tokens.serve(port=9435)                      # scrape target: http://POD_IP:9435/metrics
    # or: tokens = TrainingTokens(path="/shared/cpm/job.prom")  # target: file:///shared/cpm/job.prom
    for batch in loader:
        loss = step(batch)
        tokens.add(batch.num_tokens)

The exposition is ``cpm_training_tokens_total`` (a counter) with its ``_created`` time, in
the Prometheus text format; the exporter detects it by its ``cpm_training_`` prefix.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METRIC = "cpm_training_tokens_total"


class TrainingTokens:
    """A monotonic token counter for one training process (thread-safe)."""

    def __init__(self, path: str | None = None, *, write_every_seconds: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self.created = time.time()
        self.path = path
        self.write_every_seconds = write_every_seconds
        self._written_at = 0.0
        self._server: ThreadingHTTPServer | None = None

    def add(self, tokens: int | float) -> None:
        """Count one step's tokens (a whole, non-negative number; 12.0 is accepted)."""
        if isinstance(tokens, float) and math.isfinite(tokens) and tokens.is_integer():
            tokens = int(tokens)
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise ValueError(f"tokens must be a whole number, got {tokens!r}")
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        with self._lock:
            self._total += tokens
        if self.path and time.monotonic() - self._written_at >= self.write_every_seconds:
            self.write()

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    def text(self) -> str:
        """The counter in the Prometheus text format 0.0.4."""
        return (
            f"# HELP {METRIC} Tokens this training job has processed.\n"
            f"# TYPE {METRIC} counter\n"
            f"{METRIC} {self.total}\n"
            "# HELP cpm_training_tokens_created Start time of the token counter.\n"
            "# TYPE cpm_training_tokens_created gauge\n"
            f"cpm_training_tokens_created {self.created!r}\n"
        )

    def write(self, path: str | None = None) -> None:
        """Write the exposition atomically (a reader never sees half a file)."""
        target = path or self.path
        if not target:
            raise ValueError("no path: pass one here or to TrainingTokens(path=...)")
        folder = os.path.dirname(os.path.abspath(target))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cpm-training-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.text())
        os.replace(tmp, target)
        self._written_at = time.monotonic()

    def serve(self, port: int = 9435, host: str = "0.0.0.0") -> int:
        """Serve /metrics from a daemon thread; returns the port (useful with port 0)."""
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = counter.text().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="cpm-training", daemon=True).start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving, and write a last time if writing to a file."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.path:
            self.write()
