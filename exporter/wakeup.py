"""Requests to the main loop — stop, reload — and a wake-up that cuts its sleep short.

No Python signal handler is used. One runs on the main thread between two bytecodes: a
handler that takes a lock the main thread holds deadlocks (ten quick SIGHUPs did that with
``Event.set``), and one that calls functions can be re-entered by the next signal at each
call, so a storm of SIGHUPs nested handlers until RecursionError killed the exporter. So the
process blocks SIGTERM, SIGINT and SIGHUP in every thread (``block_signals``, before any
thread starts) and one thread takes them with ``sigwait`` (``forward_signals``): a burst of
one signal collapses into one pending signal in the kernel, and the requests run as plain code.
The loop sleeps in ``poll`` on a pipe that a request writes one byte to (the self-pipe).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading

SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def block_signals() -> None:
    """Block SIGNALS in this thread and every thread it starts from now on (call it first)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


class Wakeup:
    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)
        self.stopping = False
        self._reload = False
        self._closed = False
        self._lock = threading.Lock()  # the signal thread pokes while the main thread may close

    def request_stop(self) -> None:
        self.stopping = True
        self._poke()

    def request_reload(self) -> None:
        self._reload = True
        self._poke()

    def take_reload(self) -> bool:
        """True once per burst of reload requests; a request after this call is kept for the next."""
        if not self._reload:
            return False
        self._reload = False
        return True

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; return at once if a request arrives (or has arrived)."""
        if self.stopping or self._reload:
            return
        # poll, not select: select refuses descriptors >= 1024 (a process with many sockets).
        if self._poll.poll(max(0.0, seconds) * 1000):
            self._drain()

    def close(self) -> None:
        with self._lock:  # the signal thread may be writing: never into a closed (reused) fd
            self._closed = True
            os.close(self._read)
            os.close(self._write)

    def _poke(self) -> None:
        with self._lock:
            if self._closed:  # a signal after the loop ended: nothing is listening
                return
            # A full pipe holds wake-ups already: one more adds nothing.
            with contextlib.suppress(BlockingIOError):
                os.write(self._write, b"\0")

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass


def forward_signals(wakeup: Wakeup) -> threading.Thread:
    """A daemon thread turning SIGHUP into a reload request and SIGTERM/SIGINT into a stop."""

    def take() -> None:
        while True:
            if signal.sigwait(SIGNALS) == signal.SIGHUP:
                wakeup.request_reload()
            else:
                wakeup.request_stop()

    thread = threading.Thread(target=take, name="signals", daemon=True)
    thread.start()
    return thread
