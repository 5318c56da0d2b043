"""Smaller findings of issue 17: a signed-off worker stays signed off, pre-labelling fills image
sizes, broken files give a reason a person can read (no OpenCV assertion, no libpng line), and a
re-run that only meets the known-bad files again is not a failure."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.prelabel import submit_prelabel
from app.worker import Worker, WorkerOptions
from inference.imageio import ImageReadError, read_raw
from tests.conftest import ROOT
from tests.worker.helpers import good_images, make_db


@pytest.fixture
def db(url, tiny_models):
    database = make_db(url, tiny_models)
    yield database
    database.close()


def test_a_heartbeat_after_sign_off_does_not_bring_the_worker_back(db) -> None:
    w = "thishost:4242:cafe"
    db.jobs.register_worker(w)
    db.jobs.unregister_worker(w)
    db.jobs.heartbeat(w)  # a beat that was in flight while the worker left
    assert [x.id for x in db.jobs.workers()] == []


def test_a_worker_that_ran_leaves_no_row(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 2)
    submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    Worker(db, WorkerOptions(device="cpu", heartbeat_s=0.01, poll_s=0.01),
           artifacts=ArtifactStore(tmp_path / "a")).run(once=True)
    assert db.jobs.workers() == []


def test_prelabelling_fills_width_and_height(db, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "wide.png"), np.zeros((20, 50), np.uint8) + 9)
    fid = index_folder(db, folder).folder_id
    submit_prelabel(db, folder_id=fid, families=["anomaly"])
    Worker(db, WorkerOptions(device="cpu"), artifacts=ArtifactStore(tmp_path / "a")).run(once=True)
    [image] = db.images.query()
    assert (image.width, image.height) == (50, 20) and image.error is None


def broken_pngs(tmp_path: Path) -> list[Path]:
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    png = buf.tobytes()
    out = []
    for name, data in {"crc.png": png[:100] + bytes([png[100] ^ 0xFF]) + png[101:],
                       "half.png": png[: len(png) // 2], "header.png": png[:40],
                       "noiend.png": png[:-12]}.items():
        (tmp_path / name).write_bytes(data)
        out.append(tmp_path / name)
    return out


def test_damaged_pngs_are_refused_with_a_reason_and_nothing_on_stderr(tmp_path: Path) -> None:
    paths = broken_pngs(tmp_path)
    for p in paths:
        with pytest.raises(ImageReadError, match="damaged PNG") as exc:
            read_raw(p)
        assert "libpng" not in exc.value.reason and "Assertion" not in exc.value.reason
    code = ("import sys\nfrom inference.imageio import read_raw, ImageReadError\n"
            "for p in sys.argv[1:]:\n    try: read_raw(p)\n    except ImageReadError: pass\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_png_with_an_icc_profile_libpng_dislikes_reads_the_same_pixels_in_silence(tmp_path: Path) -> None:
    """A session-47 audit: SIRST frames printed "libpng warning: iCCP: …" during prelabel, routing propose and domain
    fit. The station applies no colour profile: the chunk is left out before decoding, the pixels are the same."""
    import struct
    import zlib
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    png = cv2.imencode(".png", pixels)[1].tobytes()
    body = b"ICC Profile\0\0" + zlib.compress(b"\0" * 132)  # a profile libpng calls "too short"
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    (tmp_path / "icc.png").write_bytes(png[:33] + chunk + png[33:])
    assert np.array_equal(read_raw(tmp_path / "icc.png"), pixels)
    code = "import sys\nfrom inference.imageio import read_raw\nread_raw(sys.argv[1])\n"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "icc.png")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_damaged_tiff_leaves_no_opencv_log_line(tmp_path: Path) -> None:
    """Found by benchmarks/fuzz_images.py: OpenCV logged "[ERROR…] TIFF_Error …" for broken TIFFs."""
    ok, buf = cv2.imencode(".tif", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    (tmp_path / "bad.tif").write_bytes(data[:4] + b"\xf0\xff\x00\x00" + data[8:])  # first directory: nowhere
    code = ("import sys\nfrom inference.imageio import read_raw, ImageReadError\n"
            "try: read_raw(sys.argv[1])\nexcept ImageReadError as e: print(e.reason)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.tif")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "not a decodable image (corrupt or unsupported format)"
    assert proc.stderr == "", proc.stderr


def test_an_unsupported_pixel_layout_is_named_not_asserted(tmp_path: Path, monkeypatch) -> None:
    from inference import imageio

    monkeypatch.setattr(imageio, "read_raw", lambda _p: np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ImageReadError) as exc:
        imageio.decode(tmp_path / "two.tif", {"rgb": 64})
    assert "unsupported pixel layout (2 channels, uint8)" in exc.value.reason
    assert "Assertion" not in exc.value.reason and "error:" not in exc.value.reason


def test_rerunning_prelabel_on_only_known_bad_files_exits_0(tmp_path: Path, sqlite_url, tiny_models,
                                                             single_thread_env) -> None:
    make_db(sqlite_url, tiny_models).close()
    parts = tmp_path / "parts"
    good_images(parts, 2)
    (parts / "text.png").write_text("not a picture")
    broken_pngs(parts)

    def prelabel() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "main.py", "prelabel", str(parts), "--db", sqlite_url, "--device",
                               "cpu", "--families", "anomaly", "--report", str(tmp_path / "r.json")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    first = prelabel()
    assert first.returncode == 0, first.stderr[-3000:]
    again = prelabel()
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing new to pre-label" in again.stderr and "failed again" in again.stderr
    for out in (first, again):
        assert "libpng" not in out.stderr and "Traceback" not in out.stderr and "[ WARN" not in out.stderr
    assert len(json.loads((tmp_path / "r.json").read_text())["failed"]) == 5


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_an_image_over_the_pixel_bound_is_named_too_large_not_corrupt(tmp_path: Path) -> None:
    """A well-formed PNG whose header says 20,000 x 20,000 (OpenCV's guard answers None for it, as for a corrupt
    file): the reason names its size and the bound. Seen in session 39: a 30,000 x 30,000 scan read "corrupt"."""
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
           + _png_chunk(b"IEND", b""))
    path = tmp_path / "scan.png"
    path.write_bytes(png)
    with pytest.raises(ImageReadError) as exc:
        read_raw(path)
    assert exc.value.reason.startswith("image too large (20000x20000 pixels, 400 megapixels")
    assert "corrupt" not in exc.value.reason
    truncated = tmp_path / "notes.png"
    truncated.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="corrupt or unsupported format"):
        read_raw(truncated)


def _riff_webp(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# A header of 20,000 x 20,000 in each format the station reads, a few hundred bytes on disk.
HUGE_HEADERS = {
    ".png": (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
             + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")),
    ".jpg": b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, 20000, 20000, 1) + b"\x01\x11\x00\xff\xd9",
    ".bmp": (b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54)
             + struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 24, 0, 0, 2835, 2835, 0, 0) + b"\x00" * 64),
    ".tif": (b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 256, 4, 1, 20000)
             + struct.pack("<HHII", 257, 4, 1, 20000) + struct.pack("<I", 0)),
    ".webp": _riff_webp(b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (19999).to_bytes(3, "little") * 2),
}


@pytest.mark.parametrize("suffix", sorted(HUGE_HEADERS))
def test_an_image_over_the_pixel_bound_is_refused_from_its_header_without_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """A session-52 audit: a 431 KB PNG of 20000 x 20000 was decoded whole (807 MB in a fresh process, the window
    ~2 GB with thumbnails and the viewer decoding at once) before the shape check refused it, OpenCV's own guard
    having been set after cv2 was imported. Now every format is refused from its header, and never decoded."""
    import inference.imageio as imageio

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image over the pixel bound reached the decoder")

    monkeypatch.setattr(imageio.cv2, "imdecode", no_decoding)
    path = tmp_path / f"scan{suffix}"
    path.write_bytes(HUGE_HEADERS[suffix])
    with pytest.raises(ImageReadError) as exc:
        read_raw(path)
    assert exc.value.reason.startswith("image too large (20000x20000 pixels, 400 megapixels")


@pytest.mark.parametrize("module", ["inference.preprocess", "app.services.display", "app.worker"])
def test_opencvs_pixel_guard_is_set_before_cv2_is_imported(module: str) -> None:
    """A session-52 audit: inference/imageio.py set OPENCV_IO_MAX_IMAGE_PIXELS after its own ``import cv2`` (and
    after inference.preprocess had imported it), and OpenCV reads it at import only, so its guard never acted. A fresh
    process that imports a module of either package sees the variable set when cv2 is first imported."""
    probe = ("import os, sys\n"
             "os.environ.pop('OPENCV_IO_MAX_IMAGE_PIXELS', None)\n"
             "seen = []\n"
             "class Spy:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'cv2' and not seen:\n"
             "            seen.append(os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS'))\n"
             "sys.meta_path.insert(0, Spy())\n"
             f"import {module}\n"
             "print(seen)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    from inference.imageio import MAX_PIXELS
    assert out.stdout.split("\n")[-2] == repr([str(MAX_PIXELS)])


def test_a_small_png_that_decodes_past_the_memory_bound_is_refused_from_its_header(tmp_path: Path) -> None:
    """A session-46 probe: a 1.5 MB PNG of 14000 x 14000 16-bit RGBA zeros (within the pixel bound) decoded to
    1.5 GB, 3.5 GB at the peak, in each of up to three decoders of the window. Its header says so: refused unread;
    8-bit grey of the same size passes the check."""
    for depth, colour, refused in ((16, 6, True), (8, 0, False)):
        ihdr = struct.pack(">IIBBBBB", 14000, 14000, depth, colour, 0, 0, 0)
        png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
               + _png_chunk(b"IEND", b""))
        path = tmp_path / f"deep{depth}.png"
        path.write_bytes(png)
        with pytest.raises(ImageReadError) as exc:
            read_raw(path)  # (the 8-bit one is refused only later, as the damaged file it is)
        assert ("too large to decode (14000x14000 pixels of 16-bit samples, 1568 MB decoded"
                in exc.value.reason) is refused


def test_a_jpeg_mask_is_read_without_its_compression_ring(tmp_path: Path) -> None:
    """A session-46 probe: a mask saved as JPEG read every faint pixel of its compression ring as target (9 pixels
    became 107). A lossless mask still reads any non-zero pixel."""
    import cv2
    import numpy as np

    from inference.imageio import read_mask

    mask = np.zeros((32, 32), np.uint8)
    mask[10:13, 10:13] = 255
    cv2.imwrite(str(tmp_path / "m.jpg"), mask, [cv2.IMWRITE_JPEG_QUALITY, 75])
    cv2.imwrite(str(tmp_path / "m.png"), (mask > 0).astype(np.uint8))   # a 0/1 PNG: 1 is target
    assert abs(int(read_mask(tmp_path / "m.jpg").sum()) - 9) <= 3
    assert int(read_mask(tmp_path / "m.png").sum()) == 9
    big = np.zeros((32, 32), np.uint8)
    big[8:20, 8:20] = 1                     # a JPEG mask of 0 / 1 values: its ones, not nothing
    cv2.imwrite(str(tmp_path / "one.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert abs(int(read_mask(tmp_path / "one.jpg").sum()) - 144) <= 12
    two = np.zeros((48, 48), np.uint8)
    two[5:20, 5:20], two[28:43, 28:43] = 100, 255   # a fainter target beside a bright one: both kept (the review)
    cv2.imwrite(str(tmp_path / "two.jpg"), two, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert abs(int(read_mask(tmp_path / "two.jpg").sum()) - 450) <= 30


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_with_an_orientation_tag_is_read_as_stored_like_a_jpeg(tmp_path: Path, orientation: int) -> None:
    """A session-47 audit: OpenCV's TIFF decoder turned a TIFF by its Orientation tag (it ignores a JPEG's), so its
    labels, masks and stored size fit the turned picture, not the raster an export copies."""
    import struct

    from inference.imageio import exif_orientation, stored_size
    width, height = 64, 48
    raster = (np.arange(height * width) % 251).astype(np.uint8).reshape(height, width)
    data = raster.tobytes()
    tags = [(256, 3, width), (257, 3, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (274, 3, orientation), (277, 3, 1), (278, 3, height), (279, 4, len(data))]
    start = 8 + 2 + 12 * len(tags) + 4
    ifd = b"".join(struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else
                                                         struct.pack("<I", start if tag == 273 else value))
                   for tag, kind, value in tags)
    path = tmp_path / "tagged.tif"
    path.write_bytes(b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + struct.pack("<I", 0) + data)
    assert exif_orientation(path) == orientation
    assert np.array_equal(read_raw(path), raster) and stored_size(path) == (width, height)


def test_a_grey_png_with_alpha_is_said_to_store_grey_with_alpha(tmp_path: Path) -> None:
    """A session-47 audit: OpenCV decodes PNG colour type 4 (grey + alpha) to four channels, and the out-of-domain
    note said such a strip was "stored as colour with alpha"."""
    import struct
    import zlib

    from inference.imageio import decode

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\0" + bytes([90, 255] * 16) for _ in range(16))  # grey 90, opaque, no filter
    (tmp_path / "ga.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 4, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    grey = np.full((16, 16), 90, np.uint8)
    assert cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    assert decode(tmp_path / "ga.png", {"gray": 64}).channels == 2
    assert decode(tmp_path / "rgba.png", {"gray": 64}).channels == 4


def test_an_indexed_png_whose_palette_is_grey_is_said_to_store_grey(tmp_path: Path) -> None:
    """A session-49 audit: OpenCV decodes an indexed (palette) PNG to three channels, and one of grey levels only was
    said "stored as colour (3 channels; training files: grey)", the classifier's and anomaly model's answers withheld
    as out of domain. Its palette says grey (with alpha where a tRNS chunk gives it); a colour palette stays colour."""
    from inference.imageio import decode

    rows = b"".join(b"\0" + bytes(range(i, i + 16)) for i in range(16))   # indices 0-31, no filter
    grey = b"".join(bytes([v * 8] * 3) for v in range(32))
    pink = b"".join(bytes([v * 8, 0, v * 8]) for v in range(32))
    for name, palette, extra, channels in (("grey", grey, b"", 1), ("grey_alpha", grey, _png_chunk(b"tRNS", b"\0"), 2),
                                           ("pink", pink, b"", 3)):
        ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 3, 0, 0, 0))
        text = _png_chunk(b"tEXt", b"Comment\0" + b"x" * 5000)   # a chunk before the palette is read past
        (tmp_path / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + text + _png_chunk(b"PLTE", palette) + extra
                                               + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))
        assert decode(tmp_path / f"{name}.png", {"gray": 64}).channels == channels, name


def test_a_bigtiff_with_an_orientation_tag_is_read_as_stored_too(tmp_path: Path) -> None:
    """The review of session 47: the fix above knew classic TIFF only; a BigTIFF (II+, 8-byte offsets, 20-byte
    directory entries) tagged 6 was still read turned."""
    import struct

    from inference.imageio import exif_orientation
    raster = np.arange(24, dtype=np.uint8).reshape(4, 6)
    blob = bytearray(b"II+\x00" + struct.pack("<HHQ", 8, 0, 0)) + raster.tobytes()
    ifd = len(blob)
    entries = [(256, 3, 6), (257, 3, 4), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 16, 16), (274, 3, 6),
               (277, 3, 1), (278, 3, 4), (279, 16, raster.nbytes)]
    blob += struct.pack("<Q", len(entries))
    for tag, kind, value in entries:
        blob += struct.pack("<HHQ", tag, kind, 1) + (struct.pack("<HHI", value, 0, 0) if kind == 3
                                                      else struct.pack("<Q", value))
    blob += struct.pack("<Q", 0)
    blob[8:16] = struct.pack("<Q", ifd)
    (tmp_path / "big.tif").write_bytes(bytes(blob))
    assert exif_orientation(tmp_path / "big.tif") == 6
    assert np.array_equal(read_raw(tmp_path / "big.tif"), raster)
