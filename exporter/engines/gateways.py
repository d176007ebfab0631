"""Gateways that count tokens per calling team: one table entry per gateway, like the engines.

A gateway (LiteLLM, Envoy AI Gateway, any router exporting per-tenant token counters) sits in front
of the model servers and labels each request's tokens with the tenant that sent it. Its counters are
read like a server's (same fetch, limits and errors) into ``ModelCounters`` whose ``model`` is the
gateway's model name and whose ``instance`` is the tenant: the token meter then applies a
server's rules to them (first scrape a baseline, late series from 0, restarts, a family missing
once). The meter splits each model's money among the tenants by their shares (``meter/tenants.py``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from exporter.engines.read import Fetch, as_declared
from exporter.errors import ParseError, SourceError
from exporter.http.textformat import FetchLimits, fetch_text, parse_wanted
from exporter.records import NO_TENANT, NOBODY, Gateway, ModelCounters, TargetScrape

log = logging.getLogger(__name__)

DEFAULT_LIMITS = FetchLimits()


@dataclass(frozen=True, slots=True)
class GatewayProfile:
    """Where a gateway keeps its per-tenant token counters.

    ``input``/``output``: counter series names; or, for a histogram of token usage by a token-type
    label (OpenTelemetry's ``gen_ai.client.token.usage``), both the same ``_sum`` series told apart by
    ``token_type_label`` = ``input_type`` / ``output_type``.
    """

    input: str
    output: str
    tenant_label: str
    model_label: str
    unset: tuple[str, ...] = ("",)  # label values meaning "no tenant"
    token_type_label: str = ""
    input_type: str = "input"
    output_type: str = "output"


GATEWAYS: Mapping[str, GatewayProfile] = MappingProxyType(
    {
        # LiteLLM proxy (litellm/integrations/prometheus.py): `model` is the deployment it called
        # ("hosted_vllm/<served name>"), `team` the key's team id; unset labels are the string "None".
        "litellm": GatewayProfile(
            input="litellm_input_tokens_metric_total",
            output="litellm_output_tokens_metric_total",
            tenant_label="team",
            model_label="model",
            unset=("", "None"),
        ),
        # Envoy AI Gateway: OpenTelemetry's gen_ai.client.token.usage histogram as Prometheus exposes
        # it; the tenant label is the one its config maps from a request header (set `tenant_label`).
        "envoy_ai_gateway": GatewayProfile(
            input="gen_ai_client_token_usage_sum",
            output="gen_ai_client_token_usage_sum",
            tenant_label="",
            model_label="gen_ai_request_model",
            token_type_label="gen_ai_token_type",
        ),
        # Any router that exports a token counter per direction with a tenant and a model label (an
        # llm-d or production-stack router, a home-grown proxy): the config names the counters.
        "counters": GatewayProfile(input="", output="", tenant_label="", model_label="model"),
    }
)


def profile_of(gateway: Gateway) -> GatewayProfile:
    """The gateway's table entry, with the counters and model label its config names (kind counters)."""
    profile = GATEWAYS[gateway.kind]
    if any(gateway.counters):
        profile = replace(profile, input=gateway.counters[0], output=gateway.counters[1])
    return replace(profile, model_label=gateway.model_label) if gateway.model_label else profile


def read_gateway(
    text: str,
    profile: GatewayProfile,
    explicit: Mapping[str, str] = MappingProxyType({}),
    tenant_label: str = "",
    limits: FetchLimits = DEFAULT_LIMITS,
) -> tuple[ModelCounters, ...]:
    """One ``ModelCounters`` per (gateway model, tenant) the gateway counted, its label sets summed;
    ``explicit`` renames a model (to the name its servers answer with), after grouping: names mapped to
    one model are several series of it (the meter follows each by its own name; TenantBook adds them). Every model is read, served
    here or not: one that is filtered out now and read later would look born since and count its
    whole life. Which models this node serves is the meter's to say. An unset tenant is ``NO_TENANT``."""
    tenant_key = tenant_label or profile.tenant_label
    if not tenant_key:
        raise ParseError(f"no tenant label configured for this gateway (its {profile.model_label} is read)")
    created_name = _created_name(profile.input)
    names = {profile.input, profile.output} | ({created_name} if created_name else set())

    def key(labels: Mapping[str, str]) -> tuple[str, str]:
        model = labels.get(profile.model_label, "")
        tenant = labels.get(tenant_key, "")
        return model, NO_TENANT if tenant in profile.unset else tenant  # the gateway's own name

    sums: dict[tuple[str, str], list[float]] = {}
    created: dict[tuple[str, str], float] = {}
    seen: dict[str, bool] = {"input": False, "output": False}
    for sample in parse_wanted(text, names, max_samples=limits.max_samples, max_wanted=limits.max_series):
        if sample.name == created_name:  # a new process's series start again: a restart, whatever the values
            if math.isfinite(sample.value):
                created[key(sample.labels)] = max(created.get(key(sample.labels), 0.0), sample.value)
            continue
        direction = _direction(profile, sample.name, sample.labels)
        if direction is None:
            continue
        if not math.isfinite(sample.value) or sample.value < 0:  # a counter never is: refuse the scrape
            raise ParseError(f"{sample.name} is {sample.value!r}, not a token count", "bad_value")
        seen[direction] = True
        sums.setdefault(key(sample.labels), [0.0, 0.0])[0 if direction == "input" else 1] += sample.value
    # Grouped by the gateway's own names, renamed after: the meter follows each by its own name
    # (server_model), so a map set or changed on a running gateway renames, never restarts, a series.
    return tuple(
        as_declared(
            ModelCounters(
                model=own,
                instance=tenant,
                input_tokens=pair[0] if seen["input"] else None,
                output_tokens=pair[1] if seen["output"] else None,
                created=created.get((own, tenant)),
                created_by=created_name if (own, tenant) in created else "",
            ),
            explicit,
        )
        for (own, tenant), pair in sorted(sums.items())
    )


def _created_name(counter: str) -> str:
    """prometheus_client's ``_created`` series of a ``_total`` counter (LiteLLM's); "" for others."""
    return counter.removesuffix("_total") + "_created" if counter.endswith("_total") else ""


def _direction(profile: GatewayProfile, name: str, labels: Mapping[str, str]) -> str | None:
    if profile.token_type_label:
        kind = labels.get(profile.token_type_label)
        return {profile.input_type: "input", profile.output_type: "output"}.get(kind or "")
    if name == profile.input:
        return "input"
    return "output" if name == profile.output else None


def target_name(gateway: Gateway) -> str:
    """How a gateway shows among the targets (``cpm_target_up{target="gateway/litellm"}``)."""
    return f"gateway/{gateway.name}"


def scrape_gateway(gateway: Gateway, limits: FetchLimits, fetch: Fetch = fetch_text) -> TargetScrape:
    """Fetch and read one gateway, like a server target. Never raises: a failure is ok=False."""
    began = time.perf_counter()
    name = target_name(gateway)
    try:
        text = fetch(gateway.url, limits, gateway.client)
        models = read_gateway(text, profile_of(gateway), gateway.models, gateway.tenant_label, limits)
    except SourceError as e:
        return TargetScrape(name, NOBODY, gateway.kind, False, error_reason=e.reason, error=str(e),
                            duration_seconds=time.perf_counter() - began)  # fmt: skip
    except Exception as e:  # a bug of ours on one gateway's input must not stop the tick for all
        log.exception("gateway=%s: unexpected error while scraping", gateway.name)
        return TargetScrape(name, NOBODY, gateway.kind, False, error_reason="internal",
                            error=f"{type(e).__name__}: {e}", duration_seconds=time.perf_counter() - began)  # fmt: skip
    return TargetScrape(
        name, NOBODY, gateway.kind, True, models, duration_seconds=time.perf_counter() - began
    )
