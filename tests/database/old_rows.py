"""A database left at an older migration with one labelled image, written with plain SQL (the
ORM knows only the newest schema): the migration tests upgrade it and check what survives."""
from __future__ import annotations

from sqlalchemy import Connection, create_engine, text

from database import migrate as mig


def old_labelled_image(url: str, revision: str, rel_path: str, class_name: str, state: str) -> int:
    """Image 7 in folder 1 ('/parts') with one label revision by 'ann', at migration ``revision``."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.upgrade(conn, revision)
            conn.execute(text("INSERT INTO folders (id, root_path, name, added_at) "
                              "VALUES (1, '/parts', 'parts', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO images (id, folder_id, rel_path, size_bytes, mtime_ns, review_state, "
                              "flagged, priority, missing, added_at, updated_at) VALUES "
                              "(7, 1, :rel, 10, 5, :state, false, 0, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                         {"rel": rel_path, "state": state})
            conn.execute(text("INSERT INTO label_revisions (image_id, revision, author, created_at, changed, "
                              "class_name, review_state) VALUES (7, 1, 'ann', CURRENT_TIMESTAMP, 'class,state', "
                              ":cls, :state)"), {"cls": class_name, "state": state})
    finally:
        engine.dispose()
    return 7


def old_model_version(conn: Connection, version_id: int, family: str, active: bool) -> None:
    """A model version row named ``v<id>`` as migrations 0006-0012 leave the table."""
    conn.execute(text("INSERT INTO model_versions (id, family, name, checkpoint_path, config, metrics, "
                      "card, active, bundled, created_at, challenger) VALUES (:i, :f, :n, '/m', '{}', "
                      "'{}', '{}', :a, false, CURRENT_TIMESTAMP, false)"),
                 {"i": version_id, "f": family, "n": f"v{version_id}", "a": active})


def old_prediction(conn: Connection, image_id: int, version_id: int, target_count: int | None = None) -> None:
    conn.execute(text("INSERT INTO predictions (image_id, model_version_id, target_count, flags, created_at) "
                      "VALUES (:i, :v, :t, '[]', CURRENT_TIMESTAMP)"), {"i": image_id, "v": version_id, "t": target_count})
