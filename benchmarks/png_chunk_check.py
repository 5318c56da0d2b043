"""Time and memory of the PNG chunk check a label save asks for (run by hand; not in CI).

    PYTHONPATH=. python benchmarks/png_chunk_check.py [--mib 286]

Writes a valid PNG of about ``--mib`` MiB (16-bit RGBA, stored without compression, in 1 MiB IDAT chunks) to a
temporary folder, then runs ``refusal_before_decoding(path, chunks=True)`` (what ``ReviewService.save`` and the
export ask) twice on it: the first reads its chunks, the second finds the answer remembered for the unchanged file.
Prints each call's time and how much the process's peak resident memory grew (``ru_maxrss``, Linux: KiB).
"""
from __future__ import annotations

import argparse
import resource
import struct
import tempfile
import time
import zlib
from pathlib import Path

from inference.imageio import PNG_SIGNATURE, refusal_before_decoding

WIDTH = 4096   # 16-bit RGBA: 32 KiB a row


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png(path: Path, mib: int) -> None:
    """A PNG of about ``mib`` MiB, written a piece at a time (the script's own memory stays small)."""
    row = b"\0" + bytes(WIDTH * 8)
    height = mib * (1 << 20) // len(row)
    packer = zlib.compressobj(0)
    with open(path, "wb") as f:
        f.write(PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, height, 16, 6, 0, 0, 0)))
        pending = b""
        for _ in range(height):
            pending += packer.compress(row)
            if len(pending) >= 1 << 20:
                f.write(_chunk(b"IDAT", pending))
                pending = b""
        f.write(_chunk(b"IDAT", pending + packer.flush()) + _chunk(b"IEND", b""))


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=286, help="the PNG's size in MiB (default 286)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        write_png(path, args.mib)
        print(f"{path.stat().st_size / 2**20:.0f} MiB PNG")
        for call in ("first check", "second check (unchanged file)"):
            before, start = peak_kib(), time.perf_counter()
            answer = refusal_before_decoding(path, chunks=True)
            took = time.perf_counter() - start
            print(f"{call}: {took * 1000:.1f} ms, peak memory +{(peak_kib() - before) / 1024:.1f} MiB, "
                  f"answer {answer!r}")


if __name__ == "__main__":
    main()
