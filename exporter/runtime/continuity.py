"""Going on exactly after a restart: resume from the state file, save it every tick, and bill the
downtime in between (to the holders found at start, or idle when it was too long).

``Continuity`` owns what only it needs (where the saved tick ended, the last write failure); the
runtime hands it the meter and its own counters, and takes back what a resume restored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from exporter import statefile
from exporter.config.schema import ExporterConfig
from exporter.meter.ledger import Meter
from exporter.records import TickInput

log = logging.getLogger(__name__)


def fresh_meter(cfg: ExporterConfig) -> Meter:
    """A meter with nothing booked yet, sized by the config."""
    return Meter(
        cfg.node,
        max_owners=cfg.max_owners,
        max_tenants=cfg.max_tenants,
        settle_s=cfg.gateway_settle_seconds,
    )


@dataclass(frozen=True, slots=True)
class Resumed:
    """What the runtime goes on from: the meter and its own saved counters (or fresh ones)."""

    meter: Meter
    target_errors: dict[str, Counter[str]]
    ticks: int


class Continuity:
    """The state file across a restart: ``resume`` at start, ``downtime`` and ``save`` every tick."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._resume_ns: int | None = None  # end of the saved tick to go on from
        self._save_error = ""  # the last write failure, logged once

    def resume(self, cfg: ExporterConfig, mode: str, meter: Meter) -> Resumed:
        """Go on from the state file, if there is a usable one; else start fresh, saying why."""
        path = cfg.state_file
        if not path:
            if mode == "run":  # the demo keeps nothing by design
                log.info("no state_file: a restart of this exporter starts its counters from zero and "
                         "bills nothing for its downtime")  # fmt: skip
            return Resumed(meter, {}, 0)
        try:
            saved = statefile.read(path, node=cfg.node, now_ns=self._clock())
            if saved is None:
                log.info("state_file=%s does not exist yet: a first start", path)
                return Resumed(meter, {}, 0)
            meter.restore(saved.meter)
            resumed = _restore_runtime(meter, saved.runtime)
        except statefile.StateProblem as e:
            return _state_unusable(cfg, path, e.reason, str(e))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:  # valid JSON, wrong shape
            return _state_unusable(cfg, path, "corrupt", f"{type(e).__name__}: {e}")
        self._resume_ns = saved.end_ns
        log.info("state_file=%s: going on from the tick that ended %.1f s ago", path,
                 (self._clock() - saved.end_ns) / 1e9)  # fmt: skip
        return resumed

    def save(
        self,
        cfg: ExporterConfig,
        end_ns: int,
        meter: Meter,
        target_errors: dict[str, Counter[str]],
        ticks: int,
    ) -> None:
        """Save this tick's state; a failed write is logged (once per cause) and counted, never fatal."""
        if not cfg.state_file:
            return
        runtime = {"errors": {t: dict(e) for t, e in target_errors.items()}, "ticks": ticks}
        try:
            statefile.write(cfg.state_file, statefile.SavedState(cfg.node, end_ns, meter.to_state(), runtime))
        except OSError as e:
            if str(e) != self._save_error:
                log.error(
                    "state_file=%s cannot be written: %s (a restart would start from zero)", cfg.state_file, e
                )
            self._save_error = str(e)
            meter.reject("state", "write_failed")
        else:
            self._save_error = ""

    def downtime(self, inp: TickInput, cfg: ExporterConfig, meter: Meter) -> TickInput:
        """The first tick after a restart spans the downtime. A short one is billed to the holders
        found at start; a longer one than state_max_gap_seconds is billed idle (exporter_down)
        in a tick of its own on ``meter``, and this tick starts after it."""
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
        meter.tick(gap, cfg.pricing, cfg.window_seconds)
        return inp


def _restore_runtime(meter: Meter, saved: dict[str, Any]) -> Resumed:
    errors = {str(t): Counter({str(r): int(n) for r, n in e.items()}) for t, e in saved["errors"].items()}
    return Resumed(meter, errors, int(saved["ticks"]))


def _state_unusable(cfg: ExporterConfig, path: str, reason: str, message: str) -> Resumed:
    meter = fresh_meter(cfg)  # nothing half-restored
    aside = statefile.set_aside(path)
    log.error("state_file=%s is unusable (%s): %s; %s; metering starts fresh", path, reason, message,
              f"set aside as {aside}" if aside else "could not set it aside")  # fmt: skip
    meter.reject("state", reason)
    return Resumed(meter, {}, 0)
