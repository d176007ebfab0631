"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.nvml import FakeNvml


@pytest.fixture(scope="session")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeNvml]:
    """The fake NVML preloaded for the real pynvml in this process (see ``tests/fakes/nvml.py``).
    ``fake_nvml.use(Scenario(...))`` sets what it reports; ``.library_path`` is the built library."""
    fake = FakeNvml(tmp_path_factory.mktemp("fake-nvml"))
    yield fake
    fake.close()
