"""Two stations making different versions of one family active at the same moment (PostgreSQL)."""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from database import ConflictError, open_database


def test_the_second_of_two_overlapping_activations_records_the_version_it_replaced(url: str) -> None:
    """Found by a session-45 probe: station B's activation waited on the active row station A held, then found it
    no longer active and recorded that it replaced nothing: the history was false and Roll back had nothing to
    return to. Whichever comes second records the one the first made active."""
    if not url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: two activations never overlap")
    a, b = open_database(url), open_database(url)
    try:
        champ = a.model_versions.register("classifier", "champ", "/x/champ", activate=True)
        va = a.model_versions.register("classifier", "vA", "/x/vA")
        vb = a.model_versions.register("classifier", "vB", "/x/vB")
        engine = sa.create_engine(url)
        blocker = engine.connect()
        hold = blocker.begin()  # a third transaction holds the champion's row: the two calls overlap behind it
        blocker.execute(sa.text("SELECT id FROM model_versions WHERE id = :i FOR UPDATE"), {"i": champ.id})
        done: dict[str, object] = {}
        threads = [threading.Thread(target=lambda db=db, v=v, who=who: done.__setitem__(
            who, db.model_versions.change_active(v.id, who, "promote"))) for db, v, who in ((a, va, "alice"),
                                                                                           (b, vb, "bob"))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        hold.rollback()
        blocker.close()
        engine.dispose()
        for t in threads:
            t.join(timeout=30)
        history = [(h.version_name, h.previous_name) for h in a.model_versions.activations("classifier")]
        first, second = history[-2:]
        assert first[1] == "champ" and second[1] == first[0]
        assert a.model_versions.active("classifier").name == second[0]
    finally:
        a.close()
        b.close()


def test_making_the_active_version_active_again_is_refused_and_writes_nothing(db) -> None:
    """A session-50 audit: two stations clicked Make active on one challenger at once; the second recorded
    "promote clf-r1 -> clf-r1" (the version replacing itself), Roll back then read "Roll back to clf-r1" and its click
    recorded "rollback clf-r1 -> clf-r1", changing nothing: the way back to the old champion was lost. Under the
    family's lock, a version already active is refused."""
    db.model_versions.register("classifier", "champ", "/x/champ", activate=True)
    new = db.model_versions.register("classifier", "new", "/x/new", challenger=True)
    db.model_versions.change_active(new.id, "alice", "promote")
    for action in ("promote", "rollback"):
        with pytest.raises(ConflictError, match="already the active classifier version"):
            db.model_versions.change_active(new.id, "bob", action, previous_becomes_challenger=action == "rollback")
    assert [(h.previous_name, h.version_name) for h in db.model_versions.activations("classifier")] == [
        ("champ", "new")]
    assert db.model_versions.active("classifier").id == new.id
    assert db.model_versions.challenger("classifier") is None
