"""Indexing throughput: a folder of 10,000+ image files, first index and re-index.

    PYTHONPATH=. python benchmarks/indexing.py [--files 10000] [--kib 64] [--db URL]

Indexing reads every byte once (SHA-256) and never decodes, so the files are random bytes
with image suffixes spread over nested folders (read once beforehand, so every run finds them
in the page cache). Baseline in the same process: the same index with one hashing thread, into
a second database. The re-index of the unchanged folder must hash nothing (size + mtime match).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app.services.file_scan as file_scan  # noqa: E402
from app.services.indexing import index_folder  # noqa: E402
from database.engine import open_database  # noqa: E402

SUFFIXES = (".png", ".jpg", ".bmp", ".tif")


def make_tree(root: Path, n: int, kib: int) -> None:
    for i in range(n):
        d = root / f"line{i % 10}" / f"lot{i % 37:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"part_{i:06d}{SUFFIXES[i % 4]}").write_bytes(os.urandom(kib * 1024))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--kib", type=int, default=64, help="size of each file")
    ap.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="index-bench-"))
    root = tmp / "parts"
    make_tree(root, args.files, args.kib)
    for e in file_scan.walk_images(root):  # page cache warm for both runs
        (root / e.rel_path).read_bytes()

    base_db = open_database(f"sqlite:///{tmp / 'baseline.sqlite'}")
    threads, file_scan.HASH_THREADS = file_scan.HASH_THREADS, 1
    serial = index_folder(base_db, root).seconds
    file_scan.HASH_THREADS = threads
    base_db.close()

    db = open_database(args.db or f"sqlite:///{tmp / 'bench.sqlite'}")
    first = index_folder(db, root)
    hashed = []
    real = file_scan.hash_file
    file_scan.hash_file = lambda p: hashed.append(p) or real(p)
    again = index_folder(db, root)
    file_scan.hash_file = real
    assert len(first.added) == args.files and again.unchanged == args.files and not hashed
    mib = args.files * args.kib / 1024
    print(f"{args.files} files ({mib:.0f} MiB): first index {first.seconds:.2f} s "
          f"({args.files / first.seconds:,.0f} files/s, {mib / first.seconds:.0f} MiB/s); "
          f"{serial / first.seconds:.2f}x the speed of one hashing thread ({serial:.2f} s)")
    print(f"re-index unchanged: {again.seconds:.2f} s ({args.files / again.seconds:,.0f} files/s), 0 files hashed "
          f"({first.seconds / again.seconds:.1f}x faster than the first index)")
    db.close()


if __name__ == "__main__":
    main()
