"""The tick loop: sources → meter → exposition, plus hot reload of the config.

Each tick reads the node and every target (in parallel, each bounded by its own
deadline), runs the meter once, renders /metrics and the landing page once, and swaps
them in. A reload (SIGHUP, file change, POST /-/reload) validates the whole new config
before swapping it in; a broken one keeps the last good config and says so.
The state file (resume at start, save every tick, bill the downtime) is the runtime's
``continuity.Continuity``, handed the meter and the runtime's counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from exporter import __version__
from exporter.config.schema import ExporterConfig
from exporter.engines.gateways import scrape_gateway, target_name
from exporter.engines.read import TENANTS_SUFFIX, Fetch, scrape, tenant_counts
from exporter.errors import ConfigError
from exporter.exposition.frontier import with_frontier
from exporter.exposition.page import LandingPage
from exporter.exposition.render import render
from exporter.exposition.server import Published
from exporter.exposition.status import OperatingPoint, RuntimeStatus, TargetStatus
from exporter.http.textformat import FetchLimits, fetch_text
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.pricing.published import load_table
from exporter.records import Gateway, GpuSample, Target, TargetScrape, TickInput
from exporter.runtime.continuity import Continuity, fresh_meter
from exporter.runtime.filestamp import FileStamp
from exporter.runtime.operating import OperatingPoints
from exporter.runtime.plan import Derived, Plan, derive, pod_facts
from exporter.sources.discovery import node_source_for
from exporter.sources.gpu.inventory import NodeSource
from exporter.wakeup import Wakeup

log = logging.getLogger(__name__)
Loader = Callable[[], ExporterConfig]


class Runtime:
    """One node's exporter: its config (reloaded hot), its sources, its meter and what it publishes."""

    def __init__(
        self,
        load: Loader,
        *,
        mode: str = "run",
        node_source: NodeSource | None = None,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], int] | None = None,
        fetch: Fetch = fetch_text,
        watch_path: str | None = None,
    ) -> None:
        self._load = load
        self.mode = mode
        self.config = load()  # the first load must succeed: the CLI reports its ConfigError
        self._derived = derive(self.config)
        self._node = node_source or node_source_for(self.config)
        self._clock = clock
        self._price_change: tuple[int, PricingConfig] | None = None  # (swap time, prices before)
        # GPU-seconds come from a monotonic clock (a wall-clock jump must not bill a day or
        # drop a tick); wall time only places the tick in calendar months and beside _created.
        # An injected wall clock also drives elapsed time unless a monotonic one is given.
        self._monotonic = monotonic or (time.monotonic_ns if clock is time.time_ns else clock)
        self._last_mono: int | None = None
        self._fetch = fetch
        self._watch_path = watch_path
        self._stamp = FileStamp.of(watch_path) if watch_path else None
        self.meter = fresh_meter(self.config)
        self.published = Published()
        self.page = LandingPage()  # the landing page's history of the last minutes
        self._lock = threading.Lock()  # guards the config and its status
        self._reload_lock = threading.Lock()  # one reload at a time, load and swap together
        self._config_ok = True
        self._config_error = ""
        self._config_success_ts = time.time()
        self._target_errors: dict[str, Counter[str]] = {}
        self._server_of: dict[str, str] = {}
        self._operating = OperatingPoints()  # each pod's engine, version, precision; changes counted
        self._points: tuple[OperatingPoint, ...] = ()
        self._target_names: frozenset[str] = frozenset()  # last tick's targets (config + discovered)
        self._price_warned: set[tuple[str, str]] = set()  # last detected server per target: a stable label
        self._ticks = 0
        self._tick_seconds = 0.0
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="scrape")
        self._continuity = Continuity(clock)  # the state file: resumed here, saved every tick
        resumed = self._continuity.resume(self.config, mode, self.meter)
        self.meter, self._target_errors, self._ticks = resumed.meter, resumed.target_errors, resumed.ticks

    # -- config -------------------------------------------------------------------------------

    def reload(self) -> tuple[bool, str]:
        """Load and validate the config; swap it in only if it is wholly valid."""
        with self._reload_lock:
            return self._reload()

    def _reload(self) -> tuple[bool, str]:
        if self._watch_path:  # what we load now is what the file poll has seen
            self._stamp = FileStamp.of(self._watch_path)
        try:
            cfg = self._load()
            if cfg.node != self.config.node:  # every series is labelled with it: restart instead
                raise ConfigError(
                    [f"node: changed from {self.config.node!r} to {cfg.node!r}; restart to rename"]
                )
            if cfg.kubernetes.restart_key() != self.config.kubernetes.restart_key():
                raise ConfigError(["kubernetes: the section takes effect at start; restart to change it"])
            if cfg.node_source.restart_key() != self.config.node_source.restart_key():
                raise ConfigError(["node_source: gpus, dcgm_url, dcgm_https, poll_seconds and "
                                   "call_timeout_seconds take effect at start; restart to change them"])  # fmt: skip
        except ConfigError as e:
            with self._lock:
                self._config_ok, self._config_error = False, str(e)
            log.error("config reload failed, keeping the last good config: %s", e)
            return False, str(e)
        with self._lock:
            changed = cfg.sha256 != self.config.sha256
            if cfg.pricing != self.config.pricing and self._price_change is None:
                # New prices apply from the swap on: the tick it lands in is cut there.
                self._price_change = (self._clock(), self.config.pricing)
            self.config, self._derived = cfg, derive(cfg)
            self.meter.max_owners = cfg.max_owners
            self.meter.set_tenant_limits(cfg.max_tenants, cfg.gateway_settle_seconds)
            self._config_ok, self._config_error = True, ""
            self._config_success_ts = time.time()
        if changed:
            log.info("config reloaded path=%s sha256=%s", cfg.path, cfg.sha256[:12])
        return True, "config reloaded" if changed else "config unchanged"

    def reload_if_changed(self) -> None:
        if not self._watch_path:
            return
        if FileStamp.of(self._watch_path) != self._stamp:
            self.reload()

    # -- one tick -----------------------------------------------------------------------------

    def tick(self) -> MeterSnapshot:
        began = time.perf_counter()
        with self._lock:
            cfg, derived = self.config, self._derived
        end_ns, mono = self._clock(), self._monotonic()
        start_ns = end_ns - (0 if self._last_mono is None else mono - self._last_mono)
        gpus, placements, pods = self._node.gpus(cfg), self._node.placements(cfg), self._node.pods(cfg)
        plan = self._plan(cfg, derived)
        scrapes, gateways = self._scrape_all(plan.targets, cfg.gateways, derived.limits)
        self._points = self._operating.update(plan.targets, scrapes)
        inp = TickInput(
            start_ns=start_ns,
            end_ns=end_ns,
            node=cfg.node,
            gpus=gpus,
            placements=placements,
            scrapes=scrapes,
            pods=pods,
            token_targets=plan.token_targets,
            roles=plan.roles,
            starved_below=cfg.node_source.starved_below_utilization,
            egress_share=cfg.node_source.egress_share,
            cross_zone_share=cfg.node_source.cross_zone_share,
            gateways=gateways,
        )
        with self._lock:
            change, self._price_change = self._price_change, None
        inp = self._continuity.downtime(inp, cfg, self.meter)
        snapshot = self.meter.tick(inp, cfg.pricing, cfg.window_seconds, price_change=change)
        self._last_mono = mono
        self._ticks += 1
        self._continuity.save(cfg, end_ns, self.meter, self._target_errors, self._ticks)
        view = with_frontier(
            snapshot,
            self._status(
                cfg,
                self._prices_in_use(cfg, derived, gpus),
                scrapes + tuple(g for g in gateways if not g.target.endswith(TENANTS_SUFFIX)),
            ),
        )
        page, live = self.page.render(view, cfg.tick_seconds)
        self.published.publish(render(view), page, live)
        self._tick_seconds = time.perf_counter() - began
        return snapshot

    def _plan(self, cfg: ExporterConfig, derived: Derived) -> Plan:
        """The config's workloads plus those the node discovered (the config wins on a pod)."""
        found = self._node.workloads(cfg)
        extra = [w for w in found if (w.owner.namespace, w.owner.pod) not in derived.declared]
        targets = cfg.targets + tuple(t for w in extra for t in w.targets)
        names = frozenset(t.name for t in targets) | {target_name(g) for g in cfg.gateways}
        names |= {t.name + TENANTS_SUFFIX for t in targets if t.tenant_label}
        if names != self._target_names:  # a reload or pods changed them: gone targets' readings go
            self.meter.forget_targets(set(names))  # on the tick thread, never beside a running tick
            # ... and their bookkeeping: a node whose pods come and go must not grow forever.
            self._target_errors = {t: e for t, e in self._target_errors.items() if t in names}
            self._server_of = {t: s for t, s in self._server_of.items() if t in names}
            self._target_names = names
        if not extra:
            return Plan(targets, derived.token_targets, derived.roles)
        tokens, roles = pod_facts(extra)
        return Plan(targets, {**derived.token_targets, **tokens}, {**derived.roles, **roles})

    def _prices_in_use(
        self, cfg: ExporterConfig, derived: Derived, gpus: tuple[GpuSample, ...]
    ) -> tuple[GpuPrice, ...]:
        """The configured inventory's prices, or those of the GPUs found on the node; a discovered
        GPU priced only by the catalogue, or not at all, is logged once, loudly."""
        if cfg.node_source.gpus == "inventory":
            return derived.prices_in_use
        out = []
        for pair in sorted({(g.hardware, g.capacity) for g in gpus}):
            price = cfg.pricing.gpu_price(*pair)
            if pair not in self._price_warned and (price is None or price.source == "catalogue"):
                self._price_warned.add(pair)
                hw, cap = pair
                if price is None:
                    log.error("hardware=%s capacity=%s found on this node has no price: its GPU-seconds are "
                              "counted as unpriced; set pricing.gpus.%s.%s", hw, cap, hw, cap)  # fmt: skip
                else:
                    log.warning("price_source=catalogue hardware=%s capacity=%s usd_per_hour=%s: no configured "
                                "price for a GPU found on this node; set pricing.gpus.%s.%s to your real price",
                                hw, cap, price.usd_per_hour, hw, cap)  # fmt: skip
            if price is not None:
                out.append(price)
        return tuple(out)

    def _scrape_all(
        self, targets: tuple[Target, ...], gateways: tuple[Gateway, ...], limits: FetchLimits
    ) -> tuple[tuple[TargetScrape, ...], tuple[TargetScrape, ...]]:
        """The targets and the gateways, all at once (the meter maps the gateways' models to the
        servers')."""
        servers = [self._pool.submit(scrape, t, limits, self._fetch) for t in targets]
        fronts = [self._pool.submit(scrape_gateway, g, limits, self._fetch) for g in gateways]
        scrapes = self._count(tuple(f.result() for f in servers))
        # Servers that name their callers (SGLang's custom labels) count like a gateway of their own.
        own = tuple(
            x for t, s in zip(targets, scrapes, strict=True) if (x := tenant_counts(t, s)) is not None
        )
        return scrapes, self._count(tuple(f.result() for f in fronts)) + own

    def _count(self, scrapes: tuple[TargetScrape, ...]) -> tuple[TargetScrape, ...]:
        """Each scrape's server and errors, for the status (a failure logged once per reason)."""
        for s in scrapes:
            if s.server:
                self._server_of[s.target] = s.server
            errors = self._target_errors.setdefault(s.target, Counter())
            if not s.ok:
                if not errors or s.error_reason not in errors:
                    log.warning("target=%s down reason=%s: %s", s.target, s.error_reason, s.error)
                errors[s.error_reason] += 1
        return scrapes

    def _status(
        self, cfg: ExporterConfig, prices_in_use: tuple[GpuPrice, ...], scrapes: tuple[TargetScrape, ...]
    ) -> RuntimeStatus:
        targets = tuple(
            TargetStatus(
                s.target,
                self._server_of.get(s.target, s.server),
                s.ok,
                s.duration_seconds,
                dict(self._target_errors[s.target]),
                s.error,
                s.holder.namespace,
                s.holder.pod,
            )
            for s in scrapes
        )
        with self._lock:
            ok, err, ts = self._config_ok, self._config_error, self._config_success_ts
        return RuntimeStatus(
            mode=self.mode,
            version=__version__,
            pricing=cfg.pricing,
            prices_in_use=prices_in_use,
            targets=targets,
            config_ok=ok,
            config_success_timestamp=ts,
            config_sha256=cfg.sha256,
            config_error=err,
            tick_seconds=self._tick_seconds,
            ticks=self._ticks,
            window_seconds=cfg.window_seconds,
            sources=self._node.status(),
            units=self._node.unit_info(),
            operating_points=self._points,
            published=cfg.published if cfg.published is not None else load_table().rows,
            operating_changes=dict(self._operating.changes),
        )

    # -- the loop -----------------------------------------------------------------------------

    def run(self, wakeup: Wakeup) -> None:
        """Tick every ``tick_seconds`` until a stop is requested; a slow tick never piles up."""
        self.tick()  # baseline: readings and a first page at once, no money yet
        next_at = time.monotonic() + self.config.tick_seconds
        while not wakeup.stopping:
            wakeup.sleep(next_at - time.monotonic())
            if wakeup.stopping:
                break
            if wakeup.take_reload():
                self.reload()
            if time.monotonic() < next_at:
                continue  # woken early by a signal: the tick keeps its schedule
            self.reload_if_changed()
            try:
                self.tick()
            except Exception:  # a bug in one tick must not kill the exporter; it is logged loudly
                log.exception("tick failed")
            next_at = max(next_at + self.config.tick_seconds, time.monotonic())
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._node.close()
