"""A real LiteLLM proxy in front of the real vLLM: two teams' keys, the money split between them.

LiteLLM 1.108.7 (``.venv-litellm``, installed by ``.ci/litellm-venv``) runs without a database: a
``custom_auth`` function maps two static keys to teams (``../shared/reference/litellm.md``). Two teams
send the same requests, ``search`` two for every one of ``chat``; the exporter reads vLLM and the
gateway, and splits the vLLM pod's money between the teams. What is checked, in the exporter's own
/metrics: the tenants' money plus the money still waiting for LiteLLM's count is the pod's money to the
nano-dollar at every scrape; every token vLLM served lands on the team that sent it, exactly, and none
on ``__direct__``; the teams' money splits about 2 : 1 (each pays the ticks its tokens were claimed
from); and all of it holds through a restart of the gateway (its counters start again from zero).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, Exporter, Samples, _stop, free_port, wait_for
from vllm_server import VllmServer

LITELLM = REPO / ".venv-litellm" / "bin" / "litellm"
KEYS = {"sk-search": "search", "sk-chat": "chat"}
AUTH = """\
from fastapi import Request
from litellm.proxy._types import ProxyException, UserAPIKeyAuth

KEYS = %r


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    team = KEYS.get(api_key.removeprefix("Bearer ").strip())
    if team is None:
        raise ProxyException(message="unknown key", type="auth_error", param="api_key", code=401)
    return UserAPIKeyAuth(api_key=api_key, team_id=team, team_alias=team, key_alias=team + "-key", user_id=team)
"""


@dataclass
class Gateway:
    port: int
    work: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(self.work),
               "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
        with (self.work / "litellm.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(LITELLM), "--config", str(self.work / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work, start_new_session=True,
            )  # fmt: skip
        wait_for(self._live, 90, interval=0.5, what=f"LiteLLM ready (log: {self.work / 'litellm.log'})")

    def _live(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.work / "litellm.log").read_text()[
            -3000:
        ]
        try:
            with urllib.request.urlopen(self.url + "/health/liveliness", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def counted(self) -> dict[str, int]:
        """LiteLLM's own input + output token counters per team."""
        with urllib.request.urlopen(self.url + "/metrics/", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith(("litellm_input_tokens_metric_total{", "litellm_output_tokens_metric_total{")):
                team = line.split('team="', 1)[1].split('"', 1)[0]
                out[team] = out.get(team, 0) + int(float(line.rsplit(" ", 1)[1]))
        return out

    def complete(self, key: str, prompt: str, max_tokens: int) -> dict[str, int]:
        body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
                "temperature": 1.0}  # fmt: skip
        request = urllib.request.Request(
            self.url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as r:
            usage: dict[str, int] = json.loads(r.read())["usage"]
        return usage


def configure(work: Path, vllm: VllmServer) -> None:
    (work / "teams_auth.py").write_text(AUTH % (KEYS,))
    (work / "litellm.yaml").write_text(json.dumps({
        "model_list": [{"model_name": "tiny-llama",
                        "litellm_params": {"model": "hosted_vllm/tiny-llama", "api_base": vllm.url + "/v1"}}],
        "litellm_settings": {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False},
        "general_settings": {"master_key": "sk-master", "custom_auth": "teams_auth.user_api_key_auth"},
    }))  # fmt: skip


def exporter_config(vllm: VllmServer, gateway: Gateway) -> str:
    return (
        # A 1-s tick lets LiteLLM's /metrics (slow under load) answer within the scrape timeout.
        "node: litellm-e2e\ntick_seconds: 1\nwindow_seconds: 20\nlimits: {scrape_timeout_seconds: 1}\n"
        "pricing: {catalogue: false, gpus: {H100: {on_demand: 3.20}}}\n"
        "gateways:\n"
        f'  - {{name: litellm, kind: litellm, url: "{gateway.url}/metrics/"}}\n'
        "inventory:\n"
        "  gpus: [{hardware: H100, count: 1, capacity: on_demand}]\n"
        "  workloads:\n"
        '    - {pod: vllm-0, namespace: serving, team: platform, model: tiny-llama, gpus: ["0"], '
        f'targets: [{{url: "{vllm.metrics_url}", server: vllm}}]}}\n'
    )


_reads: dict[int, float] = {}


def scrapes_of_gateway(exporter: Exporter, at_least: int) -> bool:
    """The exporter has read the gateway ``at_least`` more times since the first call (its ticks counted
    by cpm_ticks_total, the gateway's last scrape up)."""
    s = exporter.samples()
    ticks = s.get("cpm_ticks_total")
    start = _reads.setdefault(id(exporter), ticks)
    return ticks - start >= at_least and s.get("cpm_target_up", target="gateway/litellm") == 1.0


def split_of(s: Samples) -> tuple[dict[str, float], float, float]:
    """(money per tenant, money waiting for the gateway's count, the pod's money) in one scrape."""
    tenants = {
        x.labels["tenant"]: x.value
        for x in s.find("cpm_tenant_cost_usd_total")
        if x.labels["pod"] == "vllm-0"
    }
    waiting = sum(x.value for x in s.find("cpm_tenant_waiting_usd") if x.labels["pod"] == "vllm-0")
    pod = sum(x.value for x in s.find("cpm_cost_usd_total") if x.labels["pod"] == "vllm-0")
    return tenants, waiting, pod


def rounds(gateway: Gateway, n: int) -> dict[str, int]:
    """``n`` rounds of two search requests and one chat request, the same prompt and length each."""
    tokens = dict.fromkeys(KEYS.values(), 0)
    with ThreadPoolExecutor(3) as pool:
        for _ in range(n):
            calls = [pool.submit(gateway.complete, key, "What does a million tokens cost", 12)
                     for key in ("sk-search", "sk-search", "sk-chat")]  # fmt: skip
            for key, call in zip(("sk-search", "sk-search", "sk-chat"), calls, strict=True):
                usage = call.result()
                tokens[KEYS[key]] += usage["prompt_tokens"] + usage["completion_tokens"]
    return tokens


@pytest.fixture
def gateway(vllm_server: VllmServer, tmp_path: Path) -> Iterator[Gateway]:
    if not LITELLM.exists():
        pytest.fail(f"{LITELLM} is missing: run .ci/litellm-venv (the README's test command does)")
    configure(tmp_path, vllm_server)
    g = Gateway(free_port(), tmp_path)
    g.start()
    try:
        yield g
    finally:
        g.stop()


def test_a_real_litellm_splits_a_real_vllms_money_between_two_teams(
    vllm_server: VllmServer, gateway: Gateway, exporter_process: Callable[..., Exporter], tmp_path: Path
) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(exporter_config(vllm_server, gateway))
    exporter = exporter_process(config, lifecycle=False)
    try:
        sent = rounds(gateway, 6)
        # What a gateway counts after our last read of it dies with it (as any counter that resets
        # between two scrapes). LiteLLM counts in a callback after it answers: wait until its own
        # /metrics shows every token sent, then let the exporter read it (3 ticks) before it restarts.
        wait_for(
            lambda: gateway.counted() == sent, 30, interval=0.2, what="LiteLLM counting what it answered"
        )
        wait_for(lambda: scrapes_of_gateway(exporter, at_least=3), 30, what="three more reads of LiteLLM")
        gateway.stop()  # the gateway restarts: its counters start again from zero
        gateway.start()
        for team, n in rounds(gateway, 6).items():
            sent[team] += n
        assert sent["search"] == 2 * sent["chat"]

        def settled() -> tuple[dict[str, float], float, float] | None:
            tenants, waiting, pod = split_of(exporter.samples())
            return (tenants, waiting, pod) if {"search", "chat"} <= tenants.keys() else None

        wait_for(settled, 60, interval=0.5, what="both teams' money on vllm-0")
        for _ in range(5):  # at every scrape: the tenants' money + what waits = the pod's, to the nano-dollar
            tenants, waiting, pod = split_of(exporter.samples())
            assert sum(tenants.values()) + waiting == pytest.approx(pod, abs=2e-9 * (len(tenants) + 1)), (
                tenants
            )
            time.sleep(0.5)

        def tenant_tokens() -> dict[str, float]:
            out: dict[str, float] = {}
            for x in exporter.samples().find("cpm_tenant_tokens_total"):
                out[x.labels["tenant"]] = out.get(x.labels["tenant"], 0.0) + x.value
            return out

        # Each team's tokens are exactly what it sent (the usage vLLM answered with, which is what vLLM's
        # own counters counted), none are direct: vLLM's tokens waited for LiteLLM's count, however late
        # its callback ran, and were claimed by it.
        wanted = {team: float(n) for team, n in sent.items()}
        wait_for(lambda: {t: n for t, n in tenant_tokens().items() if n} == wanted, 30, interval=0.5,
                 what=f"the tenants' tokens to be {wanted}")  # fmt: skip
        wait_for(lambda: split_of(exporter.samples())[1] == 0.0, 30, interval=0.5, what="nothing waiting")
        tenants, waiting, pod = split_of(exporter.samples())
        assert sum(tenants.values()) == pytest.approx(pod, abs=2e-9 * len(tenants))
        # The money of the ticks each team's tokens were claimed from, and of the quiet ticks since by the
        # window's shares: about 2 : 1, not exactly (a tick costs the same whatever it served). The pod's
        # money from before the first claim (the exporter's first idle ticks) is __direct__'s.
        paid = tenants["search"] + tenants["chat"]
        assert tenants["search"] / paid == pytest.approx(2 / 3, abs=0.05), tenants
        up = exporter.samples().get("cpm_target_up", target="gateway/litellm")
        assert up == 1.0
    finally:
        exporter.stop()
