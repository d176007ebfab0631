"""Going on exactly after a restart: resume from the state file, save it every tick, and bill the
downtime in between (to the holders found at start, or idle when it was too long).

``Continuity`` is a part of ``loop.Runtime`` (a base class that owns no state): the attributes
declared below are the runtime's, set in its ``__init__``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from exporter import statefile
from exporter.config.schema import ExporterConfig
from exporter.meter.ledger import Meter
from exporter.records import TickInput

log = logging.getLogger(__name__)


class Continuity:
    """The runtime's state-file methods: ``_resume`` at start, ``_save`` and ``_downtime`` every tick."""

    config: ExporterConfig
    mode: str
    meter: Meter
    _clock: Callable[[], int]
    _target_errors: dict[str, Counter[str]]
    _ticks: int
    _resume_ns: int | None
    _save_error: str

    def _resume(self) -> None:
        """Go on from the state file, if there is a usable one; else start fresh, saying why."""
        path = self.config.state_file
        if not path:
            if self.mode == "run":  # the demo keeps nothing by design
                log.info("no state_file: a restart of this exporter starts its counters from zero and "
                         "bills nothing for its downtime")  # fmt: skip
            return
        try:
            saved = statefile.read(path, node=self.config.node, now_ns=self._clock())
            if saved is None:
                log.info("state_file=%s does not exist yet: a first start", path)
                return
            self.meter.restore(saved.meter)
            self._restore_runtime(saved.runtime)
        except statefile.StateProblem as e:
            self._state_unusable(path, e.reason, str(e))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:  # valid JSON, wrong shape
            self._state_unusable(path, "corrupt", f"{type(e).__name__}: {e}")
        else:
            self._resume_ns = saved.end_ns
            log.info("state_file=%s: going on from the tick that ended %.1f s ago", path,
                     (self._clock() - saved.end_ns) / 1e9)  # fmt: skip

    def _state_unusable(self, path: str, reason: str, message: str) -> None:
        self.meter = Meter(
            self.config.node,
            max_owners=self.config.max_owners,
            max_tenants=self.config.max_tenants,
            settle_s=self.config.gateway_settle_seconds,
        )  # nothing half-restored
        self._target_errors, self._ticks = {}, 0
        aside = statefile.set_aside(path)
        log.error("state_file=%s is unusable (%s): %s; %s; metering starts fresh", path, reason, message,
                  f"set aside as {aside}" if aside else "could not set it aside")  # fmt: skip
        self.meter.reject("state", reason)

    def _restore_runtime(self, saved: dict[str, Any]) -> None:
        self._target_errors = {
            str(t): Counter({str(r): int(n) for r, n in e.items()}) for t, e in saved["errors"].items()
        }
        self._ticks = int(saved["ticks"])

    def _save(self, cfg: ExporterConfig, end_ns: int) -> None:
        """Save this tick's state; a failed write is logged (once per cause) and counted, never fatal."""
        if not cfg.state_file:
            return
        runtime = {"errors": {t: dict(e) for t, e in self._target_errors.items()}, "ticks": self._ticks}
        try:
            statefile.write(
                cfg.state_file, statefile.SavedState(cfg.node, end_ns, self.meter.to_state(), runtime)
            )
        except OSError as e:
            if str(e) != self._save_error:
                log.error(
                    "state_file=%s cannot be written: %s (a restart would start from zero)", cfg.state_file, e
                )
            self._save_error = str(e)
            self.meter.reject("state", "write_failed")
        else:
            self._save_error = ""

    def _downtime(self, inp: TickInput, cfg: ExporterConfig) -> TickInput:
        """The first tick after a restart spans the downtime. A short one is billed to the holders
        found at start; a longer one than state_max_gap_seconds is billed idle (exporter_down)
        in a tick of its own, and this tick starts after it."""
        resume, self._resume_ns = self._resume_ns, None
        if resume is None or resume >= inp.end_ns:
            return inp
        gap_s = (inp.end_ns - resume) / 1e9
        if gap_s <= cfg.state_max_gap_seconds:
            log.info("downtime of %.1f s billed to the holders found at start", gap_s)
            return replace(inp, start_ns=resume)
        log.warning("downtime of %.0f s is longer than state_max_gap_seconds=%s: billed idle (exporter_down), "
                    "not to holders", gap_s, cfg.state_max_gap_seconds)  # fmt: skip
        gap = replace(inp, start_ns=resume, placements=(), scrapes=(), idle_reason="exporter_down")
        self.meter.tick(gap, cfg.pricing, cfg.window_seconds)
        return inp
