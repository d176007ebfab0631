"""The demo's landing page in a real headless Chromium (Debian chromium + chromedriver, Selenium).

Checks what a person opening http://127.0.0.1:PORT/ sees: the title, the SIMULATION banner naming
the engines, the node's totals, four charts of the last minutes (CPM per model with its tokens/s
per user, spend per team, idle money by reason, utilisation), the inference table with one row
per serving demo model ($ per million tokens and tokens/s per user; "–" for the idle canary),
training in its own table, the GPUs held by no pod, the calling teams, a legend for every
column; that the page updates itself in place (no reload) keeping the reader's sort; that it
fits 1 280 and 1 920 px (screenshots kept: TEST_ARTIFACTS, else the test's directory); and
that nothing breaks the page's Content-Security-Policy (no console error).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import chromium
from selenium import webdriver
from selenium.webdriver.common.by import By

from exporter.demo.demo import DEMO_SERVERS, GATEWAY_TEAMS

SERVING = {d.model for d in DEMO_SERVERS.values() if d.load is not None}
IDLE_MODELS = {d.model for d in DEMO_SERVERS.values() if d.load is None}
TRAINING = {"llama-3.1-8b-sft"}  # the demo's fine-tune (data/demo.yaml)
# Served by engines that count finished requests and their token lengths (llama.cpp does neither).
PER_REQUEST = {d.model for d in DEMO_SERVERS.values() if d.load is not None and d.engine != "llamacpp"}
MONEY = re.compile(r"^\$\d[\d,]*\.\d+$")
NUMBER = re.compile(r"^\d+(\.\d+)?$")
# Everything the assertions read, in one script run: never a stale element mid-refresh.
READ_PAGE = """
return {
  origin: performance.timeOrigin,
  title: document.title,
  banner: (document.querySelector('.banner') || {}).innerText || '',
  text: document.body ? document.body.innerText : '',
  head: Array.from(document.querySelectorAll('#cpm thead th')).map(th => th.innerText.trim()),
  rows: Array.from(document.querySelectorAll('#cpm tbody tr')).map(tr => ({
    cls: tr.className, cells: Array.from(tr.cells).map(td => td.innerText.trim())})),
  metricsLinks: Array.from(document.querySelectorAll('a[href="/metrics"]')).length,
  tenantHead: Array.from(document.querySelectorAll('#tenants thead th')).map(th => th.innerText.trim()),
  idle: Array.from(document.querySelectorAll('#idle tbody tr')).map(
    tr => Array.from(tr.cells).map(td => td.innerText.trim())),
  tenants: Array.from(document.querySelectorAll('#tenants tbody tr')).map(tr => ({
    cls: tr.className, cells: Array.from(tr.cells).map(td => td.innerText.trim())})),
  trainingHead: Array.from(document.querySelectorAll('#training thead th')).map(th => th.innerText.trim()),
  training: Array.from(document.querySelectorAll('#training tbody tr')).map(
    tr => Array.from(tr.cells).map(td => td.innerText.trim())),
  totals: Object.fromEntries(Array.from(document.querySelectorAll('#totals > div')).map(
    d => [d.querySelector('small').innerText.trim(), d.querySelector('b').innerText.trim()])),
  charts: Object.fromEntries(Array.from(document.querySelectorAll('figure.chart')).map(f => [f.id, {
    lines: f.querySelectorAll('polyline').length,
    legend: Array.from(f.querySelectorAll('.legend li')).map(li => li.innerText.trim())}])),
  titles: Array.from(document.querySelectorAll('#live th')).map(th => [th.innerText.trim(), th.title]),
  legend: Array.from(document.querySelectorAll('#legend dt')).map(dt => dt.textContent.trim()),
  updated: (document.getElementById('updated') || {}).innerText || '',
  costOrder: Array.from(document.querySelectorAll('#cpm tbody tr')).map(tr => Number(tr.cells[
    Array.from(document.querySelectorAll('#cpm thead th')).findIndex(th => th.innerText.trim().startsWith('cost'))
  ].dataset.v)),
  sorted: (document.querySelector('#cpm th[aria-sort]:not([aria-sort=none])') || {}).innerText || '',
  width: [document.documentElement.scrollWidth, window.innerWidth],
  scripts: Array.from(document.scripts).map(s => s.src),
  external: document.querySelectorAll('[src],[href^="http"]').length,
};
"""


@pytest.fixture(scope="module")
def demo(demo_process) -> Iterator[Any]:
    exporter = demo_process(0.5, wait=False)  # starts while Chromium starts
    try:
        yield exporter.wait_ready()
    finally:
        exporter.stop()


@pytest.fixture(scope="module")
def browser(demo: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def money(cell: str) -> float:
    return float(cell.removeprefix("$").replace(",", ""))


def read(driver: webdriver.Chrome) -> dict[str, Any]:
    page: dict[str, Any] = driver.execute_script(READ_PAGE)
    return page


def artefacts(default: Path) -> Path:
    out = Path(os.environ.get("TEST_ARTIFACTS") or default)
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_landing_page_in_chromium(demo, browser: webdriver.Chrome, wait_for, tmp_path: Path) -> None:
    browser.get(demo.url + "/")

    def filled() -> dict[str, Any] | None:
        """The page once every serving model has its $/M and tokens/s (the first ticks have none), the
        gateway's teams have their rows and every chart has a line."""
        page = read(browser)
        by_model = {r["cells"][0]: r["cells"] for r in page["rows"] if r["cells"]}
        head = page["head"]
        if "$/M total" not in head:
            return None
        cpm, speed = head.index("$/M total"), head.index("tokens/s per user")
        ok = set(by_model) >= SERVING and all(MONEY.match(by_model[m][cpm]) and NUMBER.match(by_model[m][speed])
                                              for m in SERVING)  # fmt: skip
        ok = ok and {r["cells"][0] for r in page["tenants"] if r["cells"]} >= set(GATEWAY_TEAMS)
        ok = ok and all(c["lines"] > 0 for c in page["charts"].values()) and len(page["charts"]) == 4
        return page if ok else None

    page = wait_for(filled, 40, interval=0.25, what="every demo model's row and every chart to show values")
    assert page["title"] == "cpm-exporter — demo-node"
    assert "SIMULATION" in page["banner"]
    for engine in ("vllm", "sglang", "tgi", "triton", "llamacpp"):
        assert engine in page["banner"], page["banner"]
    assert "training job" in page["banner"], page["banner"]
    head = page["head"]
    assert head[:5] == ["model", "team", "pod", "hardware", "engine"]
    col = {name: i for i, name in enumerate(head)}
    rows = [r["cells"] for r in page["rows"]]
    assert sorted(r[0] for r in rows) == sorted(SERVING | IDLE_MODELS), "one row per demo inference model"
    for cells in rows:
        assert len(cells) == len(head), cells
        assert MONEY.match(cells[col["$/h"]]), cells
        assert MONEY.match(cells[col["cost"]]), cells
        if cells[0] in SERVING:
            for name in ("$/M input", "$/M output", "$/M total"):
                assert MONEY.match(cells[col[name]]), (name, cells)
            assert float(cells[col["tokens/s per user"]]) > 0, cells
            assert float(cells[col["running"]]) > 0, cells
            if cells[0] in PER_REQUEST:  # the spread of request cost: its p99 above the mean
                assert money(cells[col["p99 request"]]) > money(cells[col["$/request"]]), cells
            else:  # llama.cpp counts no requests and has no length histograms
                assert cells[col["$/request"]] == cells[col["p99 request"]] == "–", cells
        else:  # holds a GPU, serves nothing: no CPM, only burn
            assert cells[col["$/M total"]] == "–", cells
            assert cells[col["tokens/s per user"]] == "–", cells
            # All of its GPU money is idle (no_traffic); its support uplift and storage are not GPU time,
            # so not idle money (cpm_idle_cost_usd_total, the rules and CpmIdleBurnHigh count the same).
            assert 0 < money(cells[col["idle $/h"]]) < money(cells[col["$/h"]]), cells
    # What each server runs (issue 20): engine as detected, version and precision as the demo config says.
    engines = {r[0]: r[col["engine"]] for r in rows}
    assert engines["meta-llama/Llama-3.3-70B-Instruct"] == "vllm 0.8.5 · fp8 · kv fp8_e4m3", engines
    assert engines["mistralai/Mistral-7B-Instruct-v0.3"] == "vllm", engines  # nothing says more: no guess

    # Training runs in their own columns: $/M training tokens and tokens/s, no users, so no interactivity.
    thead = page["trainingHead"]
    assert "$/M training tokens" in thead and "tokens/s per user" not in thead, thead
    (run,) = page["training"]
    tcol = {name: i for i, name in enumerate(thead)}
    assert run[0] in TRAINING and MONEY.match(run[tcol["$/M training tokens"]]), run
    assert float(run[tcol["tokens/s"]].replace(",", "")) > 0, run
    (idle,) = page["idle"]
    assert idle[0] == "H100 (on_demand)" and MONEY.match(idle[1].removesuffix("/h")), idle

    # The node's totals: the spend rate is the rows' $/h summed (one definition), money billed so far.
    totals = page["totals"]
    lines = [money(r[col["$/h"]]) for r in rows] + [money(run[tcol["$/h"]]), money(idle[1])]
    assert money(totals["spend"].removesuffix("/h")) == pytest.approx(sum(lines), abs=0.01 * len(lines))
    assert money(totals["billed"]) > 0 and float(totals["GPUs"]) > 0, totals
    assert totals["utilisation"].endswith("%") and float(totals["tokens/s"].replace(",", "")) > 0, totals

    # The charts: CPM per serving model with the tokens/s per user it was reached at; the other three.
    charts = page["charts"]
    cpm_legend = charts["chart-cpm"]["legend"]
    for model in SERVING:
        assert any(li.startswith(model + " $") and "tokens/s per user" in li for li in cpm_legend), cpm_legend
    assert not any(li.startswith(m + " ") for m in IDLE_MODELS for li in cpm_legend), "no tokens: no CPM"
    assert {li.split(" $")[0] for li in charts["chart-spend"]["legend"]} >= {r[col["team"]] for r in rows}
    assert any(li.startswith("no_traffic ") for li in charts["chart-idle"]["legend"]), charts["chart-idle"]
    assert any(li.startswith("H100 ") and li.endswith("%") for li in charts["chart-util"]["legend"])

    # Every column says what it is: a tooltip, and a line in the legend.
    assert all(title for _, title in page["titles"]), page["titles"]
    assert {name for name, _ in page["titles"]} <= set(page["legend"]), page["legend"]

    # The shared 70B's money by calling team (the demo's gateway: 5 : 3 : 2 of its tokens, no direct calls).
    assert page["tenantHead"][:4] == ["calling team", "model", "pod", "cost"], page["tenantHead"]
    tcol = {name: i for i, name in enumerate(page["tenantHead"])}
    teams = {r["cells"][0]: r["cells"] for r in page["tenants"] if r["cls"] != "waiting"}
    assert set(GATEWAY_TEAMS) <= set(teams), teams
    tokens = {t: float(teams[t][tcol["output tokens"]].replace(",", "")) for t in GATEWAY_TEAMS}
    for team, weight in GATEWAY_TEAMS.items():
        assert tokens[team] / sum(tokens.values()) == pytest.approx(
            weight / sum(GATEWAY_TEAMS.values()), abs=0.02
        )
        assert MONEY.match(teams[team][tcol["cost"]]) and MONEY.match(teams[team][tcol["$/M tokens"]]), teams[
            team
        ]
    costs = [money(r["cells"][tcol["cost"]]) for r in page["tenants"] if r["cls"] != "waiting"]
    assert costs == sorted(costs, reverse=True), "most money first"
    assert any(r["cls"] == "waiting" for r in page["tenants"]), page["tenants"]

    # Sorted by cost, most first; a click on "cost" sorts it the other way, and the sort survives the
    # page's updates, which happen in place: the same document, a newer "updated" time.
    assert page["sorted"] == "cost" and page["costOrder"] == sorted(page["costOrder"], reverse=True), page
    browser.execute_script(
        "Array.from(document.querySelectorAll('#cpm thead th')).find(th => th.innerText.trim() === 'cost').click()"
    )
    first_origin, first_updated = page["origin"], page["updated"]
    later = wait_for(
        lambda: (p := read(browser))["updated"] != first_updated and p,
        20,
        interval=0.25,
        what="the page to update itself with a newer 'updated' time",
    )
    assert later["origin"] == first_origin, "updated in place, not reloaded"
    assert later["costOrder"] == sorted(later["costOrder"]), "the reader's sort kept across an update"

    # Self-contained: our one inline script, no external asset; nothing the CSP blocked, no console error.
    assert later["scripts"] == [""] and later["external"] == 0, later
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    # Fits 1 280 and 1 920 px (no sideways scroll); a screenshot of each kept.
    keep = artefacts(tmp_path)
    for width in (1280, 1920):
        browser.set_window_size(width, 1000)
        height = wait_for(lambda: browser.execute_script("return document.documentElement.scrollHeight"), 5)
        browser.set_window_size(width, min(height + 140, 8000))
        seen = wait_for(
            lambda w=width: (p := read(browser))["width"][1] == w and p, 10, what=f"a {width} px window"
        )
        assert seen["width"][0] <= seen["width"][1], f"overflows {width} px: {seen['width']}"
        browser.save_screenshot(str(keep / f"landing-{width}.png"))
    print(f"screenshots in {keep}")

    # The /metrics link works.
    assert page["metricsLinks"] == 1
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, 'a[href="/metrics"]').click() is None, 10)
    wait_for(lambda: browser.current_url == demo.url + "/metrics", 10, what="navigation to /metrics")
    text = wait_for(lambda: browser.find_element(By.TAG_NAME, "body").text, 10)
    assert "# TYPE cpm_cost_usd_total counter" in text
    # The demo shows every field of the operating point (issue 20), its distance to a published row included.
    for family in ("cpm_operating_point_info", "cpm_running_requests", "cpm_waiting_requests",
                   "cpm_operating_point_changes_total", "cpm_frontier_ratio", "cpm_published_row_info"):  # fmt: skip
        assert f"\n{family}{{" in text, family
    assert 'row="demo-llama70b-fp8-h100-40tps"' in text
    assert 'cpm_build_info{version="' in text and 'mode="demo"' in text
