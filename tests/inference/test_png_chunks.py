"""The PNG chunk check behind the label save's and the export's refusal (``refusal_before_decoding(chunks=True)``)
and ``read_raw``'s (``png_damage``): one chunk walk, reading a file a piece at a time, its answer remembered while
the file is unchanged."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import imageio
from inference.imageio import png_damage, read_raw, refusal_before_decoding

WIDTH, HEIGHT = 1200, 1000   # one IDAT chunk of 1.2 MB: more than a piece of the walk (1 MiB)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def big_png() -> bytes:
    """An 8-bit grey PNG whose pixels are stored in one IDAT chunk larger than 1 MiB (stored, not compressed)."""
    rows = np.random.default_rng(3).integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 0, 0, 0, 0)
    return (imageio.PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 0))
            + _chunk(b"IEND", b""))


def damaged(png: bytes, damage: str) -> bytes:
    idat = png.index(b"IDAT")
    if damage == "truncated":
        return png[:idat + 5000]
    if damage == "crc":   # a byte of its IDAT's data flipped, late in the chunk (past the first piece)
        at = idat + 4 + (1 << 20) + 10
        return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]
    assert damage == "no IEND"
    return png[:-12]


REASONS = {"truncated": "truncated in chunk 'IDAT'", "crc": "CRC error in chunk 'IDAT'",
           "no IEND": "truncated (no IEND chunk)", "valid": None}


class _Reads:
    """Every file ``inference.imageio`` opens, and what each ``read`` asked for (-1: the rest of the file)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        self.sizes: list[int] = []
        real_open = open

        reads = self

        class Spy:
            def __init__(self, f: Any) -> None:
                self._f = f

            def __enter__(self) -> Spy:
                return self

            def __exit__(self, *exc: object) -> None:
                self._f.close()

            def read(self, n: int = -1) -> bytes:
                reads.sizes.append(n)
                return self._f.read(n)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._f, name)

        def spy_open(path: Any, *args: Any, **kwargs: Any) -> Spy:
            self.opened.append(os.fspath(path))
            return Spy(real_open(path, *args, **kwargs))

        monkeypatch.setattr(imageio, "open", spy_open, raising=False)

    def clear(self) -> None:
        self.opened.clear()
        self.sizes.clear()


@pytest.mark.parametrize("damage", list(REASONS))
def test_the_chunk_check_reads_a_png_a_piece_at_a_time_and_says_the_same_reasons(tmp_path: Path, monkeypatch,
                                                                                 damage: str) -> None:
    """A session-52 audit: every label saved on a PNG (A, a class key, a verdict, a gallery decision over many files)
    read the whole file into memory and copied it again to check its chunks, on the label-writes thread: 688 ms and
    574 MiB more peak memory per save of a valid 286 MiB PNG, later saves queueing behind it. The check now walks the
    chunks from the file, no read asking for more than 1 MiB, with the same reasons as before (and as ``read_raw``'s
    in-memory check)."""
    png = big_png() if damage == "valid" else damaged(big_png(), damage)
    path = tmp_path / f"{damage.replace(' ', '_')}.png"
    path.write_bytes(png)
    reads = _Reads(monkeypatch)
    expected = None if REASONS[damage] is None else f"not a decodable image (damaged PNG: {REASONS[damage]})"
    assert refusal_before_decoding(path, chunks=True) == expected
    assert reads.sizes and all(0 <= n <= 1 << 20 for n in reads.sizes), reads.sizes
    assert png_damage(np.frombuffer(png, np.uint8))[0] == REASONS[damage]
    if damage == "valid":
        assert read_raw(path).shape == (HEIGHT, WIDTH)


def test_an_unchanged_png_is_not_read_again_and_a_changed_one_is(tmp_path: Path, monkeypatch) -> None:
    """A session-52 audit: each save of a label on the same PNG read its whole file again (688 ms for a 286 MiB
    one). The answer is now remembered for the file's path, size and modification time: a second check reads its
    header only; a file written since (a new time, or a new size) is read again and its new state said."""
    path = tmp_path / "part.png"
    png = big_png()
    path.write_bytes(png)
    reads = _Reads(monkeypatch)
    assert refusal_before_decoding(path, chunks=True) is None
    assert len(reads.sizes) > 1   # its header, then its chunks
    reads.clear()
    assert refusal_before_decoding(path, chunks=True) is None
    assert reads.opened == [str(path)] and reads.sizes == [26]   # its header only
    # damaged in place, the same size: a new modification time
    before = path.stat().st_mtime_ns
    path.write_bytes(damaged(png, "crc"))
    os.utime(path, ns=(before + 10**9, before + 10**9))
    reads.clear()
    assert refusal_before_decoding(path, chunks=True) == "not a decodable image (damaged PNG: CRC error in chunk 'IDAT')"
    assert len(reads.sizes) > 1
    reads.clear()
    assert refusal_before_decoding(path, chunks=True) == "not a decodable image (damaged PNG: CRC error in chunk 'IDAT')"
    assert reads.sizes == [26]
    # mended, with a byte more after its end, its time set back to the one remembered: a new size, read again
    path.write_bytes(png + b"\0")
    os.utime(path, ns=(before + 10**9, before + 10**9))
    reads.clear()
    assert refusal_before_decoding(path, chunks=True) is None
    assert len(reads.sizes) > 1


def _copy_keeping_time(source: Path, target: Path, mtime_ns: int) -> None:
    """``source`` copied over ``target`` as ``cp -p`` does (``shutil.copy2``: the same inode, the source's time), that
    time being ``mtime_ns``; its change time made to move where the clock's grain left it as it was."""
    import shutil
    import time

    before = target.stat().st_ctime_ns if target.exists() else None
    shutil.copy2(source, target)
    os.utime(target, ns=(mtime_ns, mtime_ns))
    while target.stat().st_ctime_ns == before:   # a coarse clock: the same tick as the last check
        time.sleep(0.01)
        os.utime(target, ns=(mtime_ns, mtime_ns))


@pytest.mark.parametrize("first, then", [("valid", "crc"), ("crc", "valid")])
def test_a_same_size_copy_keeping_the_time_is_read_again(tmp_path: Path, first: str, then: str) -> None:
    """A session-52 audit: the answer was remembered for the file's path, size and modification time only, which
    ``cp -p``, ``shutil.copy2`` and Explorer's copy keep from the source: a damaged copy of the same size put over a
    checked good file passed (its labels accepted, exported as good data), and a mended copy put over a damaged one
    stayed refused. The file's inode, device and change time (which no copy tool sets back) are remembered too."""
    png = big_png()
    sources = {"valid": tmp_path / "good.png", "crc": tmp_path / "bad.png"}
    sources["valid"].write_bytes(png)
    sources["crc"].write_bytes(damaged(png, "crc"))
    assert len(damaged(png, "crc")) == len(png)
    mtime = sources["valid"].stat().st_mtime_ns
    part = tmp_path / "lot" / "part.png"
    part.parent.mkdir()
    expected = {"valid": None, "crc": "not a decodable image (damaged PNG: CRC error in chunk 'IDAT')"}
    _copy_keeping_time(sources[first], part, mtime)
    assert refusal_before_decoding(part, chunks=True) == expected[first]
    inode = part.stat().st_ino
    _copy_keeping_time(sources[then], part, mtime)
    assert (part.stat().st_ino, part.stat().st_size, part.stat().st_mtime_ns) == (inode, len(png), mtime)
    assert refusal_before_decoding(part, chunks=True) == expected[then]


def test_where_nothing_tells_a_copy_the_chunks_are_read_at_each_check(tmp_path: Path, monkeypatch) -> None:
    """On Windows ``st_ctime`` is the creation time, which a copy over an existing file keeps with its file id, so a
    remembered answer could outlive a damaged copy put in place (a session-53 review): there the chunks are read at
    each check (``REMEMBER_PNG_ANSWERS`` false), and a same-size damaged copy keeping every time is caught."""
    monkeypatch.setattr(imageio, "REMEMBER_PNG_ANSWERS", False)
    path = tmp_path / "part.png"
    png = big_png()
    path.write_bytes(png)
    assert refusal_before_decoding(path, chunks=True) is None
    st = path.stat()
    reads = _Reads(monkeypatch)
    assert refusal_before_decoding(path, chunks=True) is None
    assert len(reads.sizes) > 1   # unchanged, and read again: nothing remembered
    reads.clear()
    with open(path, "r+b") as f:   # the same file, the same size, every time put back
        f.write(damaged(png, "crc"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert refusal_before_decoding(path, chunks=True) == "not a decodable image (damaged PNG: CRC error in chunk 'IDAT')"
    assert len(reads.sizes) > 1   # the header, then the chunks again
