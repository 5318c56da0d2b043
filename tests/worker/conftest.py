from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.database.conftest import pg_url, sqlite_url, url  # noqa: F401  (fixtures reused here)
from tests.tiny_models import save_tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models are slower with several threads on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def single_thread_env(monkeypatch) -> None:
    """Worker subprocesses started by a test use one thread each too."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
