"""Indexing a new folder into SQLite: the names' trigram index filled per row by a trigger (as
migration 0008 left it) or per chunk in one statement (0009_pg_search), in one process,
alternating, on the same folder (issue 22: "the 10k figures no worse than today's").

Three schemas, each a new SQLite file per run:

- ``trigger``: migrated to 0008_queue_keys only (the FTS5 table, filled by its insert trigger);
- ``bulk``: migrated to head (``ImageRepository.sync`` fills the FTS5 table per chunk);
- ``no-fts``: head with the FTS5 table and its triggers dropped (the name walk; before 0008).

    python benchmarks/index_fts.py --images 10000 [--rounds 3] [--folder DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from app.services.indexing import index_folder  # noqa: E402
from benchmarks.gui_gallery import make_images  # noqa: E402
from database import migrate as mig  # noqa: E402
from database import open_database  # noqa: E402


def _database(kind: str, where: Path) -> str:
    url = f"sqlite:///{where.as_posix()}"
    engine = create_engine(url)
    with engine.begin() as conn:
        mig.upgrade(conn, "0008_queue_keys" if kind == "trigger" else "head")
        if kind == "no-fts":
            for trigger in ("insert", "delete", "update"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS images_name_fts_{trigger}"))
            conn.execute(text("DROP TABLE IF EXISTS images_name_fts"))
            conn.execute(text("DROP TABLE IF EXISTS images_name_fts_bulk"))
    engine.dispose()
    return url


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--folder", help="folder of synthetic images (made when missing)")
    args = ap.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="index-fts-")) / "images"
    if not (folder / "done").exists():
        make_images(folder, args.images, distinct=300, side=48)
        (folder / "done").write_text("")
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # this process's CPU time (all threads): less swayed by the load
    work = Path(tempfile.mkdtemp(prefix="index-fts-db-"))
    for r in range(args.rounds):
        for kind in ("trigger", "bulk", "no-fts") if r % 2 == 0 else ("no-fts", "bulk", "trigger"):
            # (not migrated on opening: "trigger" stays at 0008)
            db = open_database(_database(kind, work / f"{kind}-{r}.sqlite"), migrate=False)
            t, c = time.perf_counter(), time.process_time()
            report = index_folder(db, folder)
            times.setdefault(kind, []).append(time.perf_counter() - t)
            cpu.setdefault(kind, []).append(time.process_time() - c)
            if kind != "no-fts":  # the names' index agrees with the rows (FTS5's own check)
                with db.session(write=True) as s:
                    s.execute(text("INSERT INTO images_name_fts(images_name_fts) VALUES ('integrity-check')"))
            db.close()
            print(f"round {r + 1} {kind}: {len(report.added)} new files in {times[kind][-1]:.2f} s "
                  f"(CPU {cpu[kind][-1]:.2f} s)", flush=True)
    for what, table in (("wall", times), ("CPU", cpu)):
        base = statistics.median(table["trigger"])
        for kind, got in table.items():
            print(f"{what} {kind}: median {statistics.median(got):.2f} s (runs {', '.join(f'{t:.2f}' for t in got)}); "
                  f"{statistics.median(got) / base:.2f}x the trigger's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
