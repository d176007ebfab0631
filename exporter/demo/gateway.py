"""A simulated LiteLLM proxy in front of simulated engines: each team's share of the tokens they served.

It speaks LiteLLM 1.108's exposition (``../shared/reference/litellm.md``): per-team input and output
token counters labelled with the deployment it called (``hosted_vllm/<served model>``), the team
and its alias, unset labels as the string "None". Every token the engines serve is a team's: the
gateway sees all traffic (no direct calls), so the tenant split must give each team exactly its share.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from exporter.demo.simulation import SimEngine
from exporter.meter.money import allocate

_LABELS = ('api_key_alias="{team}-key",api_provider="hosted_vllm",end_user="None",hashed_api_key="{key}",'
           'model="hosted_vllm/{model}",model_id="{model}",org_alias="None",org_id="None",'
           'requested_model="{model}",team="{team}",team_alias="{team}",user="None",user_email="None"')  # fmt: skip


class SimGateway:
    """Counts, per engine and team, the tokens each engine served since the last look, split among the
    teams by their weights (whole tokens, exactly: largest remainder)."""

    model = "gateway"  # SimServer names its thread after it

    def __init__(self, engines: Sequence[SimEngine], teams: Mapping[str, int]) -> None:
        self.engines = list(engines)
        self.teams = dict(sorted(teams.items()))
        self.tokens = {(e.model, t): [0, 0] for e in self.engines for t in self.teams}
        self._seen = {id(e): (e.prompt_tokens, e.generation_tokens) for e in self.engines}
        self._lock = threading.Lock()

    def advance(self, now: float) -> None:
        with self._lock:
            for e in self.engines:
                e.advance(now)
                self._count(e)

    def _count(self, e: SimEngine) -> None:
        prompt, generation = e.prompt_tokens, e.generation_tokens
        last_p, last_g = self._seen[id(e)]
        # An engine restart zeroes its counters: what it shows now was served since.
        dp = prompt - last_p if prompt >= last_p else prompt
        dg = generation - last_g if generation >= last_g else generation
        self._seen[id(e)] = (prompt, generation)
        weights = list(self.teams.values())
        for team, i, o in zip(self.teams, allocate(dp, weights), allocate(dg, weights), strict=True):
            self.tokens[(e.model, team)][0] += i
            self.tokens[(e.model, team)][1] += o

    def text(self) -> str:
        with self._lock:
            rows = sorted(self.tokens.items())
            out = []
            for name, k in (("input", 0), ("output", 1)):
                family = f"litellm_{name}_tokens_metric"
                out += [f"# HELP {family}_total Total number of {name} tokens from LLM requests",
                        f"# TYPE {family}_total counter"]  # fmt: skip
                out += [f"{family}_total{{{_LABELS.format(team=t, key=f'h-{t}', model=m)}}} {float(v[k])}"
                        for (m, t), v in rows]  # fmt: skip
            return "\n".join(out) + "\n"
