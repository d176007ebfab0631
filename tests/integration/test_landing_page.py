"""The demo's landing page in a real headless Chromium (Debian chromium + chromedriver, Selenium).

Checks what a person opening http://127.0.0.1:PORT/ sees: the title, the SIMULATION banner, the
#cpm table with one row per demo model ($ per million tokens and tokens/s per user for the
models that serve, "–" for the idle canary), the idle row, a working /metrics link, and that
the page refreshes itself (its "updated" time changes without the test reloading it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
  tenants: Array.from(document.querySelectorAll('#tenants tbody tr')).map(tr => ({
    cls: tr.className, cells: Array.from(tr.cells).map(td => td.innerText.trim())})),
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


def updated(page: dict[str, Any]) -> str:
    m = re.search(r"updated (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)", page["text"])
    assert m, page["text"]
    return m.group(1)


def test_landing_page_in_chromium(demo, browser: webdriver.Chrome, wait_for) -> None:
    browser.get(demo.url + "/")

    def filled() -> dict[str, Any] | None:
        """The page once every serving model has its $/M and tokens/s (the first ticks have none) and the
        gateway's teams have their rows."""
        page = read(browser)
        by_model = {r["cells"][0]: r["cells"] for r in page["rows"] if r["cls"] != "idle" and r["cells"]}
        head = page["head"]
        if "$/M total" not in head:
            return None
        cpm, speed = head.index("$/M total"), head.index("tokens/s per user")
        ok = set(by_model) >= SERVING and all(MONEY.match(by_model[m][cpm]) and NUMBER.match(by_model[m][speed])
                                              for m in SERVING)  # fmt: skip
        ok = ok and {r["cells"][0] for r in page["tenants"] if r["cells"]} >= set(GATEWAY_TEAMS)
        return page if ok else None

    page = wait_for(filled, 30, interval=0.25, what="every demo model's row to show $/M and tokens/s")
    assert page["title"] == "cpm-exporter — demo-node"
    assert "SIMULATION" in page["banner"]
    head = page["head"]
    assert head[:4] == ["model", "team", "pod", "hardware"]
    col = {name: i for i, name in enumerate(head)}
    rows = [r["cells"] for r in page["rows"] if r["cls"] != "idle"]
    assert sorted(r[0] for r in rows) == sorted(SERVING | IDLE_MODELS | TRAINING), "one row per demo model"
    for cells in rows:
        assert len(cells) == len(head), cells
        assert MONEY.match(cells[col["$/h"]].removesuffix("/h")), cells
        if cells[0] in SERVING:
            for name in ("$/M input", "$/M output", "$/M total"):
                assert MONEY.match(cells[col[name]]), (name, cells)
            assert float(cells[col["tokens/s per user"]]) > 0, cells
            if cells[0] in PER_REQUEST:  # the spread of request cost: its p99 above the mean
                assert money(cells[col["p99 request"]]) > money(cells[col["$/request"]]), cells
            else:  # llama.cpp counts no requests and has no length histograms
                assert cells[col["$/request"]] == cells[col["p99 request"]] == "–", cells
        elif cells[0] in TRAINING:  # $/M training tokens; no users, so no tokens/s per user
            assert MONEY.match(cells[col["$/M total"]]), cells
            assert cells[col["tokens/s per user"]] == "–", cells
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
    idle = [r["cells"] for r in page["rows"] if r["cls"] == "idle"]
    assert len(idle) == 1, page["rows"]
    assert idle[0][0].startswith("idle — H100 (on_demand)"), idle
    assert MONEY.match(idle[0][-1]), idle

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

    # The page refreshes itself: its "updated" time changes while the test only watches.
    first_origin, first_updated = page["origin"], updated(page)
    wait_for(
        lambda: (p := read(browser))["origin"] != first_origin and updated(p) != first_updated,
        20,
        interval=0.25,
        what="the page to reload itself with a newer 'updated' time",
    )

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
