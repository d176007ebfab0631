"""The ``cpm-exporter`` command. The only module that exits the process."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config.schema import DEFAULT_PORT
from exporter.errors import ConfigError, SourceError
from exporter.logformat import FORMATS, formatter

if TYPE_CHECKING:  # imported lazily at run time so that --help stays fast
    from exporter.exposition.webconfig import WebConfig
    from exporter.runtime.loop import Runtime

log = logging.getLogger("exporter")

DESCRIPTION = f"""\
Live cost per million tokens of AI workloads, as Prometheus metrics.

  cpm-exporter demo                       simulated node: 8 H100, 5 engines + a training job
  cpm-exporter run --config pricing.yaml  a real node, from your config
  cpm-exporter check-config pricing.yaml  validate a config and print the effective prices
  cpm-exporter calc --help                offline: CPM from a price and a throughput, line by line
  cpm-exporter compare --help             offline: what the measured workload would cost on other hardware

Default listen port {DEFAULT_PORT} (not used by node_exporter 9100, dcgm-exporter 9400,
OpenCost 9003 or kube-state-metrics 8080). Pages: / (live table), /metrics, /healthz.
"""


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 0.0.0.0:{DEFAULT_PORT}), got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


WEB_CONFIG_HELP = (
    "TLS and basic auth for every page, in the web-config format of Prometheus's exporter-toolkit "
    "(as node_exporter's flag): tls_server_config, http_server_config.headers, basic_auth_users "
    "(bcrypt hashes). /healthz and /readyz stay open to probes. Read once at start: a file that "
    "does not load stops the exporter (exit 2) instead of serving without it."
)


def _add_web_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web.config.file", dest="web_config", default=None, metavar="FILE", help=WEB_CONFIG_HELP
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpm-exporter", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"cpm-exporter {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (info)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=FORMATS,
        help="log line format: logfmt (key=value, as Prometheus logs) or json (one object per line) (logfmt)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run on a simulated node: no GPU, no cluster, made-up data")
    demo.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", DEFAULT_PORT),
        metavar="HOST:PORT",
        help=f"where to serve / and /metrics (127.0.0.1:{DEFAULT_PORT})",
    )
    demo.add_argument(
        "--tick-seconds", type=float, default=None, metavar="S", help="seconds between ticks (demo default 2)"
    )
    _add_web_config(demo)

    run = sub.add_parser("run", help="meter a real node from a config file (hot-reloaded)")
    run.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="the config YAML: pricing, node_source, kubernetes, inventory (README: Configuration reference)",
    )
    run.add_argument(
        "--listen",
        type=_listen,
        default=("0.0.0.0", DEFAULT_PORT),
        metavar="HOST:PORT",
        help=f"where to serve / and /metrics (0.0.0.0:{DEFAULT_PORT})",
    )
    run.add_argument(
        "--web.enable-lifecycle",
        dest="lifecycle",
        action="store_true",
        help="accept POST /-/reload (off by default, as in Prometheus)",
    )
    _add_web_config(run)

    check = sub.add_parser("check-config", help="validate a config; print every problem, or the price table")
    check.add_argument("file", metavar="FILE")

    from exporter.whatif.command import add_parsers  # calc, compare: flags only, nothing heavy

    add_parsers(sub)
    from exporter.report.command import add_parser as add_report  # flags only

    add_report(sub)
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(args.log_format))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        if args.command == "check-config":
            return _check(args.file)
        if args.command in ("calc", "compare"):
            from exporter.whatif.command import run

            return run(args)
        if args.command == "report":
            from exporter.report.command import run as report

            return report(args)
        web = _load_web(args.web_config)  # before anything starts: never serve without it
        from exporter.wakeup import block_signals

        block_signals()  # before any thread starts: every thread inherits the mask
        if args.command == "demo":
            return _demo(args.listen, args.tick_seconds, web)
        return _run(args.config, args.listen, args.lifecycle, web)
    except ConfigError as e:
        print(f"cpm-exporter: invalid config\n{e}", file=sys.stderr)
        return 2
    except (OSError, SourceError) as e:  # e.g. no NODE_NAME, no kubeconfig: said plainly, no traceback
        print(f"cpm-exporter: {e}", file=sys.stderr)
        return 1


def _check(path: str) -> int:
    from exporter.config.load import format_price_table, load_config

    cfg = load_config(path)
    print(format_price_table(cfg))
    print(f"\n{path}: OK ({len(cfg.gpus)} GPUs, {len(cfg.workloads)} workloads, {len(cfg.targets)} targets)")
    return 0


def _load_web(path: str | None) -> WebConfig | None:
    if path is None:
        return None
    from exporter.exposition.webconfig import load_web_config

    try:
        return load_web_config(path)
    except ConfigError as e:
        raise ConfigError(e.problems, f"--web.config.file {path}") from e


def _demo(listen: tuple[str, int], tick_seconds: float | None, web: WebConfig | None) -> int:
    from exporter.demo.demo import DemoNode, start_demo
    from exporter.runtime.loop import Runtime

    demo = start_demo(tick_seconds)
    try:
        runtime = Runtime(demo.load, mode="demo", node_source=DemoNode(demo))
        print(
            "*** SIMULATION: cpm-exporter demo — made-up GPUs, simulated inference servers ***",
            file=sys.stderr,
        )
        return _serve(runtime, listen, lifecycle=True, web=web)
    finally:
        demo.stop()


def _run(path: str, listen: tuple[str, int], lifecycle: bool, web: WebConfig | None) -> int:
    from exporter.config.load import load_config
    from exporter.runtime.loop import Runtime

    runtime = Runtime(lambda: load_config(path), mode="run", watch_path=path)
    return _serve(runtime, listen, lifecycle=lifecycle, web=web)


def _serve(
    runtime: Runtime, listen: tuple[str, int], *, lifecycle: bool, web: WebConfig | None = None
) -> int:
    from exporter.exposition.server import serve
    from exporter.wakeup import Wakeup, forward_signals

    wakeup = Wakeup()
    server = serve(listen[0], listen[1], runtime.published, runtime.reload if lifecycle else None, web)
    host, port = str(server.server_address[0]), server.server_address[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    scheme = "https" if web is not None and web.tls is not None else "http"
    secured = " (basic auth)" if web is not None and web.basic_auth_users else ""
    print(
        f"cpm-exporter {__version__} serving {scheme}://{shown}:{port}/ (metrics at /metrics){secured}",
        file=sys.stderr,
    )
    forward_signals(wakeup)
    try:
        runtime.run(wakeup)
    finally:
        server.shutdown()
        wakeup.close()
    return 0
