from __future__ import annotations

from pathlib import Path

import pytest

from tests.database.conftest import pg_url, sqlite_url, url  # noqa: F401  (fixtures reused here)
from tests.tiny_models import one_thread, save_tiny_models  # noqa: F401  (one_thread: autouse)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def other_models(tmp_path_factory) -> dict[str, Path]:
    """A second set of tiny models (another seed): a challenger, or a version a routing rule names."""
    return save_tiny_models(tmp_path_factory.mktemp("other"), seed=1)


@pytest.fixture
def single_thread_env(monkeypatch) -> None:
    """Worker subprocesses started by a test use one thread each too."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")


@pytest.fixture
def tiny_db(url, tiny_models):  # noqa: F811 - the url fixture imported above
    """A database (SQLite and PostgreSQL) whose active versions are the tiny models."""
    from tests.worker.helpers import make_db
    database = make_db(url, tiny_models)
    yield database
    database.close()
