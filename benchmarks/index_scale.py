"""Index a folder into a new SQLite file, then re-open it unchanged: time and peak memory, with
the code tree given (this checkout, or another one to compare: ``git archive main``).

    python benchmarks/index_scale.py CODE_TREE FOLDER
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time

sys.path.insert(0, sys.argv[1])

from app.services.indexing import index_folder  # noqa: E402
from database import open_database  # noqa: E402


def main() -> int:
    db = open_database(f"sqlite:///{tempfile.mkdtemp(prefix='index-scale-')}/x.sqlite")
    t = time.perf_counter()
    first = index_folder(db, sys.argv[2])
    fresh = time.perf_counter() - t
    t = time.perf_counter()
    index_folder(db, sys.argv[2])
    again = time.perf_counter() - t
    print(f"{sys.argv[1]}: fresh index of {len(first.added)} files {fresh:.1f} s; re-open {again:.1f} s; "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
