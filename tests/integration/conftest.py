"""Fixtures for the integration tests: real processes on 127.0.0.1, each one stopped by its PID.

* ``free_port()``: a currently free TCP port on 127.0.0.1.
* ``wait_for(predicate, timeout)``: poll until ``predicate()`` is truthy (no fixed sleeps); an
  exception or a falsy result means "not yet", and the last one is shown on timeout.
* ``prometheus``: one real Prometheus (Debian's ``/usr/bin/prometheus``) for the whole session,
  scraping every 1 s. ``prometheus.set_targets({"job": ["127.0.0.1:PORT"]})`` rewrites its
  config and POSTs ``/-/reload``; ``prometheus.query(expr)`` goes through ``/api/v1/query``.
  Targets reach the scrape loop at most ~5 s after a (re)load: Prometheus throttles discovery
  updates with a hard-coded 5 s ticker (tooling.md §1), whether they come from static configs,
  a reload or file_sd. Static configs + reload is used because file_sd adds fsnotify on top.
* ``exporter_process(config)`` / ``demo_process()``: ``python -m exporter run|demo`` as a
  subprocess on a free loopback port, returned once ``/readyz`` answers 200 (first tick done).

Tests must never skip: a missing tool fails with a pointer to ``.ci/run``, which installs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from vllm_server import pytest_collection_finish, vllm_server  # noqa: F401 (fixture; runs it last)

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# urllib would send loopback requests through $http_proxy: never use a proxy here.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


# --- small helpers -----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.1, what: str = "", consecutive: int = 1
) -> T:
    """Call ``predicate`` until it returns something truthy ``consecutive`` times in a row (so a
    lucky sample cannot pass a tolerance check); return that, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    streak = 0
    while True:
        try:
            result = predicate()
        except Exception as e:  # not ready yet; shown if it never becomes ready
            last, streak = e, 0
        else:
            streak = streak + 1 if result else 0
            if streak >= consecutive:
                return result
            last = result
        if time.monotonic() >= deadline:
            name = what or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:g} s waiting for {name}; last result: {last!r}")
        time.sleep(interval)


def without_data(
    items: Sequence[T], answers: Callable[[T], object], timeout: float, interval: float = 1.0
) -> list[T]:
    """The items whose ``answers`` is still empty after ``timeout``, each asked again until it answers
    (a store's queries over series that need a little history)."""
    empty = list(items)
    deadline = time.monotonic() + timeout
    while empty and time.monotonic() < deadline:
        empty = [x for x in empty if not answers(x)]
        if empty:
            time.sleep(interval)
    return empty


def http(method: str, url: str, *, data: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of one request; HTTP error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        try:
            return int(e.code), e.read()
        finally:
            e.close()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run .ci/run (it installs Debian prometheus, chromium, "
                    "chromium-driver), or apt-get install it", pytrace=False)  # fmt: skip
    return path


CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,900",
)


@contextlib.contextmanager
def chromium(workdir: Path, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """Debian's headless Chromium driven by its chromedriver (Selenium), quit on the way out."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    for tool in (binary, driver_path):
        if not tool.exists():
            pytest.fail(
                f"{tool} is missing: run .ci/run (apt-get install chromium chromium-driver)", pytrace=False
            )
    workdir.mkdir(parents=True, exist_ok=True)
    options = Options()
    options.binary_location = str(binary)
    flags = (
        *CHROMIUM_FLAGS[:-1],
        f"--window-size={width},{height}",
        f"--user-data-dir={workdir / 'profile'}",
    )
    for flag in flags:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never runs (it would try to download one).
    service = Service(str(driver_path), log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        driver.quit()  # ends Chromium, then stops chromedriver by its PID


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-limit:]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process by PID, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    else:
        proc.wait()


# --- /metrics as data --------------------------------------------------------------------------

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Samples:
    """One /metrics payload parsed by prometheus_client's parser."""

    samples: tuple[Sample, ...]
    types: dict[str, str]  # sample name -> family type
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Samples:
        samples: list[Sample] = []
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.append(Sample(s.name, dict(s.labels), float(s.value)))
                types[s.name] = family.type
        return cls(tuple(samples), types, text)

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [
            s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def get(self, name: str, **labels: str) -> float:
        """The value of the one series matching; fails if there are none or several."""
        found = self.find(name, **labels)
        assert len(found) == 1, f"expected one {name}{labels}, found {len(found)}: {found}"
        return found[0].value

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.find(name, **labels))

    def counters(self) -> dict[SeriesKey, float]:
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for s in self.samples
            if self.types.get(s.name) == "counter"
        }


# --- exporter subprocesses ---------------------------------------------------------------------


@dataclass
class Exporter:
    """One ``python -m exporter`` process on 127.0.0.1:port."""

    args: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def get(self, path: str) -> tuple[int, bytes]:
        return http("GET", self.url + path)

    def post(self, path: str) -> tuple[int, bytes]:
        return http("POST", self.url + path, data=b"")

    def metrics_text(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}: {body[:200]!r}"
        return body.decode("utf-8")

    def samples(self) -> Samples:
        return Samples.parse(self.metrics_text())

    def next_tick(self, after: int | None = None, timeout: float = 15.0) -> Samples:
        """/metrics of a tick later than ``after`` (default: the tick being served now)."""
        if after is None:
            after = int(self.samples().get("cpm_ticks_total"))

        def newer() -> Samples | None:
            s = self.samples()
            return s if s.get("cpm_ticks_total") > after else None

        return wait_for(newer, timeout, interval=0.05, what=f"a tick after #{after} of {self.address}")

    def log(self) -> str:
        return _tail(self.log_path)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> Exporter:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise _Exited(self.proc.returncode)
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return self
            except _Exited as e:
                raise AssertionError(f"exporter {self.args} exited with {e.code}:\n{self.log()}") from None
            time.sleep(0.05)
        raise AssertionError(f"exporter {self.args} not ready within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        _stop(self.proc)


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ExporterFactory:
    """Starts exporters; every one it started is stopped at session end (tests may stop earlier)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Exporter] = []

    def spawn(
        self, command: Sequence[str], *, wait: bool = True, env: dict[str, str] | None = None
    ) -> Exporter:
        for attempt in range(3):  # a port taken between free_port() and bind(): try another
            port = free_port()
            log_path = self.workdir / f"exporter-{len(self.started)}-{port}.log"
            args = [sys.executable, "-m", "exporter", *command, "--listen", f"127.0.0.1:{port}"]
            environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    args,
                    cwd=REPO,
                    env=environ,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            exporter = Exporter(args, port, log_path, proc)
            self.started.append(exporter)
            if not wait:
                return exporter
            try:
                return exporter.wait_ready()
            except AssertionError:
                exporter.stop()
                if attempt == 2 or "Address already in use" not in exporter.log():
                    raise
        raise AssertionError("unreachable")

    def run(
        self, config: Path, *, lifecycle: bool = True, wait: bool = True, env: dict[str, str] | None = None
    ) -> Exporter:
        command = ["run", "--config", str(config)]
        if lifecycle:
            command.append("--web.enable-lifecycle")
        return self.spawn(command, wait=wait, env=env)

    def demo(self, tick_seconds: float | None = 0.5, *, wait: bool = True) -> Exporter:
        command = ["demo"] if tick_seconds is None else ["demo", "--tick-seconds", str(tick_seconds)]
        return self.spawn(command, wait=wait)

    def stop_all(self) -> None:
        for exporter in self.started:
            exporter.stop()


# --- Prometheus --------------------------------------------------------------------------------


class Prometheus:
    """Debian's Prometheus on 127.0.0.1, scrape and evaluation interval 1 s, lifecycle API on."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.jobs: dict[str, list[str]] = {}
        # job → extra scrape-config keys (honor_labels, ...) and "labels" for its targets
        self.job_options: dict[str, dict[str, Any]] = {}
        self.rule_files: list[str] = []  # set before start(): rules evaluated every second
        self.alertmanagers: list[str] = []  # host:port of Alertmanagers to send alerts to
        self.external_labels: dict[str, str] = {}  # e.g. this Prometheus's cluster, as a per-cluster one has

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        config = {  # JSON is YAML
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
                "external_labels": self.external_labels,
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    **{k: v for k, v in self.job_options.get(job, {}).items() if k != "labels"},
                    "static_configs": [
                        {"targets": targets, "labels": self.job_options.get(job, {}).get("labels", {})}
                    ],
                }
                for job, targets in self.jobs.items()
            ],
            "rule_files": self.rule_files,
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]},
        }
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.replace(self.config_path)

    def start(self) -> None:
        self._write_config()
        for _ in range(3):
            self.port = free_port()
            data = self.workdir / f"data-{self.port}"
            args = [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ]
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    if http("GET", self.url + "/-/ready", timeout=2)[0] == 200:
                        return
                time.sleep(0.05)
            _stop(self.proc)
            if "address already in use" not in _tail(self.log_path).lower():
                break
        raise AssertionError(f"Prometheus did not become ready:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def set_targets(
        self,
        jobs: dict[str, Iterable[str]],
        *,
        timeout: float = 20.0,
        options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Replace every scrape job, reload, and wait until Prometheus lists all the targets.
        ``options``: per job, extra scrape-config keys and ``labels`` for its targets."""
        self.jobs = {job: list(targets) for job, targets in jobs.items()}
        self.job_options = dict(options or {})
        self._write_config()
        status, body = http("POST", self.url + "/-/reload")
        assert status == 200, f"Prometheus reload failed ({status}): {body.decode(errors='replace')}"
        wanted = {(job, t) for job, targets in self.jobs.items() for t in targets}

        def listed() -> bool:
            active = self.api("/api/v1/targets", state="active")["activeTargets"]
            return wanted <= {(t["labels"]["job"], t["labels"]["instance"]) for t in active}

        wait_for(listed, timeout, interval=0.2, what=f"Prometheus to list targets {sorted(wanted)}")

    def wait_up(self, job: str, timeout: float = 30.0) -> None:
        """Wait for a successful scrape of every target of ``job`` (the first takes ~5 s)."""
        count = len(self.jobs[job])

        def up() -> bool:
            return len(self.query(f'up{{job="{job}"}} == 1')) == count

        wait_for(up, timeout, interval=0.2, what=f"up{{job={job!r}}} == 1")

    def api(self, path: str, **params: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = http("GET", url)
        answer = json.loads(body)
        assert status == 200 and answer.get("status") == "success", f"{url}: {status} {answer}"
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result list of an instant query (``at``: UNIX time of evaluation, default now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("/api/v1/query", **params)
        assert data["resultType"] in ("vector", "scalar"), data
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str, at: float | None = None) -> float:
        """The value of an expression that must give exactly one series."""
        result = self.query(expr, at)
        assert len(result) == 1, f"{expr}: expected one series, got {result}"
        return float(result[0]["value"][1])


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(name="free_port", scope="session")
def free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(scope="session")
def exporters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterFactory]:
    factory = ExporterFactory(tmp_path_factory.mktemp("exporters"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def exporter_process(exporters: ExporterFactory) -> Callable[..., Exporter]:
    """``exporter_process(config_path, lifecycle=True, wait=True)``: ``python -m exporter run``."""
    return exporters.run


@pytest.fixture(scope="session")
def demo_process(exporters: ExporterFactory) -> Callable[..., Exporter]:
    """``demo_process(tick_seconds=0.5, wait=True)``: ``python -m exporter demo``."""
    return exporters.demo


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(require_tool("prometheus"), tmp_path_factory.mktemp("prometheus"))
    try:
        prom.start()
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")
