"""Time and memory of the PNG chunk check a label save asks for (run by hand; not in CI).

    PYTHONPATH=. python benchmarks/png_chunk_check.py [--mib 286]

Writes a valid PNG of about ``--mib`` MiB (16-bit RGBA, stored without compression, in 1 MiB IDAT chunks) to a
temporary folder, then runs ``refusal_before_decoding(path, chunks=True)`` (what ``ReviewService.save`` and the
export ask) twice on it: the first reads its chunks, the second finds the answer remembered for the unchanged file.
The baseline, run last in the same process, is what the check did before it streamed: the whole file read into
memory and ``png_damage`` run over its bytes. Prints each call's time, how much the process's peak resident memory
grew (``ru_maxrss``, Linux: KiB; the baseline runs last because a peak only rises) and the ratios to the baseline.
"""
from __future__ import annotations

import argparse
import resource
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from inference.imageio import PNG_SIGNATURE, png_damage, refusal_before_decoding

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
        rows = []
        for call in ("first check", "second check (unchanged file)", "baseline: whole file read, then png_damage"):
            before, start = peak_kib(), time.perf_counter()
            if call.startswith("baseline"):
                answer = png_damage(np.frombuffer(path.read_bytes(), np.uint8))[0]
            else:
                answer = refusal_before_decoding(path, chunks=True)
            took = time.perf_counter() - start
            rows.append((call, took, (peak_kib() - before) / 1024))
            print(f"{call}: {took * 1000:.1f} ms, peak memory +{rows[-1][2]:.1f} MiB, answer {answer!r}")
        base_s, base_mib = rows[-1][1], rows[-1][2]
        for call, took, mib in rows[:-1]:
            print(f"{call}: {took / base_s:.3f} x the baseline's time, {mib / max(base_mib, 1e-9):.3f} x its memory")


if __name__ == "__main__":
    main()
