"""Signal-safe requests to the main loop: stop, reload, and a wake-up that cuts its sleep short.

A Python signal handler runs on the main thread between two bytecodes — possibly while that
thread is inside ``threading.Event.wait`` holding the event's lock. A handler that takes any
lock (``Event.set`` does) then deadlocks the exporter, which is what ten quick SIGHUPs did.
So handlers here only assign a flag and write one byte to a pipe (the classic self-pipe);
the loop sleeps in ``poll`` on that pipe.
"""

from __future__ import annotations

import contextlib
import os
import select


class Wakeup:
    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)
        self.stopping = False
        self._reload = False

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
        os.close(self._read)
        os.close(self._write)

    def _poke(self) -> None:
        # A full pipe holds wake-ups already: one more adds nothing.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
