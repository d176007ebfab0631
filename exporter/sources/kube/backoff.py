"""The capped, jittered wait before the pod watch tries again."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Doubling delays from ``initial`` up to ``maximum``, each jittered down by up to 25%."""

    def __init__(self, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> None:
        self.initial, self.maximum, self._rand = initial, maximum, rand
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * (1 - 0.25 * self._rand())

    def reset(self) -> None:
        self._next = self.initial
