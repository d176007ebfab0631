"""``cpm-exporter report``: our counters in a Prometheus-compatible store → rows finance can use.

``add_parser`` only declares flags (``--help`` stays fast); ``run`` reads, builds, writes, and
prints the reconciliation to stderr. Exit 0: written and reconciled; 3: written, but some node's
rows do not add up to its bill (listed); 2: nothing written (the error says why).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from exporter import __version__

HELP = """\
Chargeback rows from the counters cpm-exporter exported, read back from Prometheus (or VictoriaMetrics,
Thanos, Mimir): one row per period and group, money by component, tokens by direction, requests,
GPU-seconds held and busy, idle money by reason. Every node's rows are checked against its
cpm_bill_usd_total to the nano-dollar; gaps in the data are listed, never filled.

  cpm-exporter report --prometheus http://prometheus:9090 --from 2026-11-01 --to 2026-12-01
  cpm-exporter report --prometheus https://vm.example:8428 --bearer-token-file /run/token \\
      --from 2026-11-01 --to 2026-12-01 --step month --by team --format focus --out nov.focus.csv
  cpm-exporter report --prometheus http://prometheus:9090 --from 2026-12-01 --format html --out dec.html
"""
FORMATS = ("csv", "json", "focus", "html")
STEPS = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def add_parser(sub: Any) -> None:
    from exporter.report.rows import CHOICES

    p = sub.add_parser("report", help="chargeback rows (CSV, JSON, FOCUS, HTML) from Prometheus, reconciled",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--prometheus", required=True, metavar="URL", help="the store's base URL (http://prometheus:9090)"
    )
    p.add_argument("--from", dest="start", required=True, type=when, metavar="DATE",
                   help="start, inclusive: 2026-11-01 (UTC midnight), 2026-11-01T06:00:00Z, or now-7d")  # fmt: skip
    p.add_argument("--to", dest="end", default="now", type=when, metavar="DATE", help="end, exclusive (now)")
    p.add_argument("--step", default="day", metavar="STEP",
                   help="period of a row: hour, day, week, month (calendar), whole, or a duration (6h) (day)")  # fmt: skip
    p.add_argument("--by", default="team,model", type=lambda s: dims_arg(s, CHOICES), metavar="LABELS",
                   help=f"group rows by these labels, comma-separated, of: {', '.join(CHOICES)} (tenant: the calling "
                        "team, from the gateway split where a server has one) (team,model)")  # fmt: skip
    p.add_argument(
        "--format", default="csv", choices=FORMATS, help="csv, json, focus (FOCUS 1.2) or html (csv)"
    )
    p.add_argument(
        "--out", metavar="FILE", help="write here (default: stdout); csv and focus also get FILE.meta.json"
    )
    p.add_argument(
        "--account", default="cpm-exporter", help="FOCUS billing account and provider name (cpm-exporter)"
    )
    auth = p.add_argument_group("reaching the store")
    auth.add_argument(
        "--bearer-token-file", default="", metavar="FILE", help="send its content as a bearer token (https)"
    )
    auth.add_argument("--basic-auth-user", default="", metavar="USER", help="basic auth user")
    auth.add_argument(
        "--basic-auth-password-file", default="", metavar="FILE", help="basic auth password, from a file"
    )
    auth.add_argument(
        "--ca-file", default="", metavar="FILE", help="trust this PEM bundle instead of the system's CAs"
    )
    auth.add_argument("--insecure-skip-verify", action="store_true", help="accept any TLS certificate")
    auth.add_argument("--timeout", default="120s", type=duration, metavar="DURATION", help="per query (120s)")
    tune = p.add_argument_group("reading")
    tune.add_argument("--chunk", default="1h", type=duration, metavar="DURATION",
                      help="raw samples are read this much at a time (1h; smaller for big fleets)")  # fmt: skip
    tune.add_argument("--lookback", default="1d", type=duration, metavar="DURATION",
                      help="how far before --from to look for each series' starting value (1d)")  # fmt: skip
    tune.add_argument("--max-gap", default="5m", type=duration, metavar="DURATION",
                      help="a node silent longer than this is listed as a gap (5m)")  # fmt: skip


def when(text: str) -> float:
    """A date, an RFC 3339 time, now, or now-<duration>: UNIX seconds."""
    text = text.strip()
    if text == "now" or text.startswith("now-"):
        return time.time() - (duration(text[4:]) if text != "now" else 0.0)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 2026-11-01, 2026-11-01T06:00:00Z or now-7d, got {text!r}"
        ) from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 5m, 1h, 1d, got {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def dims_arg(text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in text.split(",") if d.strip())
    bad = [d for d in dims if d not in allowed]
    if bad or not dims:
        raise argparse.ArgumentTypeError(f"--by takes labels of {', '.join(allowed)}; got {text!r}")
    return dims


def periods(start: float, end: float, step: str) -> list[Any]:
    from exporter.report.collect import periods_between
    from exporter.report.rows import Period

    if step == "whole":
        return [Period(start, end)]
    if step == "month":
        out, t = [], datetime.fromtimestamp(start, tz=timezone.utc)
        while t.timestamp() < end:
            nxt = (t.replace(day=1) + timedelta(days=32)).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0
            )
            out.append(Period(t.timestamp(), min(nxt.timestamp(), end)))
            t = nxt
        return out
    return periods_between(start, end, STEPS.get(step) or duration(step))


def run(args: argparse.Namespace) -> int:
    from exporter.report import html, tables
    from exporter.report.collect import collect, interactivity
    from exporter.report.promapi import PrometheusClient, PrometheusError
    from exporter.report.rows import build

    if args.end <= args.start:
        print("cpm-exporter report: --to must be after --from", file=sys.stderr)
        return 2
    try:
        spans = periods(args.start, args.end, args.step)
    except argparse.ArgumentTypeError as e:
        print(f"cpm-exporter report: --step: {e}", file=sys.stderr)
        return 2
    client = PrometheusClient(args.prometheus, args.bearer_token_file, args.basic_auth_user,
                              args.basic_auth_password_file, args.ca_file, args.insecure_skip_verify, args.timeout)  # fmt: skip
    try:
        collected = collect(client, spans, chunk_s=args.chunk, lookback_s=args.lookback, max_gap_s=args.max_gap,
                            progress=_progress())  # fmt: skip
    except PrometheusError as e:
        print(f"cpm-exporter report: {e}", file=sys.stderr)
        return 2
    report = build(spans, args.by, collected.increases, list(collected.warnings))
    meta = metadata(report, args)
    if args.format in ("html", "json"):
        try:
            meta["tokens_per_second_per_user"] = interactivity(client, args.start, args.end)
        except PrometheusError as e:  # the rows stand without it; say so
            meta["warnings"].append(f"no interactivity per model: {e}")
    if args.format == "csv":
        text = tables.to_csv(tables.flat_rows(report))
    elif args.format == "focus":
        text = tables.focus_csv(report, args.account)
    elif args.format == "json":
        text = tables.to_json(report, meta)
    else:
        text = html.page(report, meta)
    _write(text, args.out, meta if args.format in ("csv", "focus") else None)
    _summary(report, meta)
    return 0 if report.reconciled else 3


def metadata(report: Any, args: argparse.Namespace) -> dict[str, Any]:
    from exporter.report.tables import FOCUS_VERSION, iso, number

    return {
        "generator": f"cpm-exporter {__version__} report",
        "source": args.prometheus,
        "from": iso(report.periods[0].start),
        "to": iso(report.periods[-1].end),
        "step": args.step,
        "by": list(report.dims),
        "format": args.format,
        "focus_version": FOCUS_VERSION if args.format == "focus" else None,
        "reconciled": report.reconciled,
        "reconciliation": [
            {
                "period_start": iso(report.periods[c.period].start),
                "cluster": c.cluster,
                "node": c.node,
                "rows_usd": number(c.rows_usd),
                "bill_usd": number(c.bill_usd),
                "ok": c.ok,
            }
            for c in report.checks
        ],
        "gaps": [
            {"cluster": c, "node": n, "after": iso(a), "before": iso(b) if b is not None else None}
            for c, n, a, b in report.gaps
        ],
        "counter_resets": [
            {"cluster": c, "node": n, "resets": k} for (c, n), k in sorted(report.resets.items())
        ],
        "warnings": list(report.warnings),
    }


def _write(text: str, out: str | None, meta: dict[str, Any] | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    Path(out).write_text(text, encoding="utf-8")
    if meta is not None:
        Path(out + ".meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def _summary(report: Any, meta: dict[str, Any]) -> None:
    from exporter.report.tables import check_lines, number

    total = sum((c.rows_usd for c in report.checks), Decimal(0))
    nodes = len({(c.cluster, c.node) for c in report.checks})
    err = sys.stderr
    print(f"cpm-exporter report: {len(report.rows)} rows, {len(report.periods)} periods, {nodes} nodes, "
          f"${number(total)}", file=err)  # fmt: skip
    if report.reconciled:
        print("reconciled: every node's rows add up to its cpm_bill_usd_total in every period, to the nano-dollar",
              file=err)  # fmt: skip
    else:
        print("NOT RECONCILED: these nodes' rows differ from their bill:", file=err)
        for line in check_lines(report):
            print(line, file=err)
    for g in meta["gaps"]:
        until = g["before"] or "the end (its money since is not in this report)"
        print(f"gap: {g['cluster'] + '/' if g['cluster'] else ''}{g['node']} has no samples from {g['after']} to "
              f"{until}", file=err)  # fmt: skip
    for r in meta["counter_resets"]:
        print(
            f"counter resets: {r['node']} x{r['resets']} (exporter restarts without a state file)", file=err
        )
    for w in meta["warnings"]:
        print(f"warning: {w}", file=err)


def _progress() -> Any:
    from exporter.report.tables import iso

    tty = sys.stderr.isatty()
    shown = {"last": -1}

    def show(done: int, total: int, reached: float) -> None:
        pct = 100 * done // total
        if total < 2 or (not tty and pct // 10 == shown["last"] // 10 and done != total):
            return
        shown["last"] = pct
        end = "\r" if tty and done < total else "\n"
        print(f"report: read up to {iso(reached)} ({done}/{total} chunks, {pct} %)", end=end, file=sys.stderr)

    return show
