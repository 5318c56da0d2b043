"""Index a folder into a new SQLite file, then re-open it unchanged: time and peak memory, with
the code tree given (this checkout, or another one to compare: ``git archive main``).

    python benchmarks/index_scale.py CODE_TREE FOLDER [N]

With ``N``, FOLDER is first filled with N distinct 8×8 PNGs, a thousand per subfolder (a line's
folder of small part images; the re-open time is what each re-scan of a followed folder costs).
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time

sys.path.insert(0, sys.argv[1])

from app.services.indexing import index_folder  # noqa: E402
from database import open_database  # noqa: E402


def make_folder(root: str, n: int) -> None:
    import os

    import cv2
    import numpy as np
    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    for i in range(n):
        sub = os.path.join(root, f"lot{i // 1000:04d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"p{i % 1000:04d}.png"), "wb") as f:
            f.write(png + i.to_bytes(4, "little"))  # distinct bytes: a distinct content hash per file


def main() -> int:
    if len(sys.argv) > 3:
        make_folder(sys.argv[2], int(sys.argv[3]))
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
