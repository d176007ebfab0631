"""One loopback HTTP server answering for every simulated instance at ``/<name>/metrics``.

It serves whatever answer the current tick planned (``serve``), and counts the requests
it got. Handler threads are not daemons and the server joins them on close, so a test
leaks no thread; a slow answer waits on an event that ``close`` sets.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType

from tests.groundtruth.answers import Answer


class _Httpd(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close joins every handler thread
    request_queue_size = 64  # a tick scrapes every instance at once


class SimServer:
    def __init__(self) -> None:
        self._answers: Mapping[str, Answer] = MappingProxyType({})
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.closing = threading.Event()
        self._httpd = _Httpd(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="groundtruth-http")
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}/metrics"

    def serve(self, answers: Mapping[str, Answer]) -> None:
        """What the next scrapes get (one plan per tick)."""
        self._answers = MappingProxyType(dict(answers))

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection, as the exporter asks
            disable_nagle_algorithm = True  # headers and body go out at once, no delayed-ACK wait

            def do_GET(self) -> None:
                name = self.path.split("/")[1]
                found = sim._answers.get(name)
                with sim._lock:
                    sim.hits[name] += 1
                if found is None:
                    self.send_error(404)
                    return
                if found.delay_s and sim.closing.wait(found.delay_s):
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that gave up
                    self.send_response(found.status)
                    self.send_header("Content-Type", found.content_type)
                    self.send_header("Content-Length", str(len(found.body)))
                    self.end_headers()
                    self.wfile.write(found.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
