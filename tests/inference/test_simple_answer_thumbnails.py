"""The simple answers' thumbnails read images as the station and its models do (one preprocessing home)."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from inference.imageio import read_image
from inference.training.simple_answers import thumbnails


def _jpeg_turned_by_exif(path: Path) -> np.ndarray:
    """A JPEG whose EXIF says "turn it a quarter" (orientation 6); returns the pixels as stored."""
    img = np.zeros((48, 64), np.uint8)
    img[:, :8] = 255
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 6) \
        + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    return img


def test_an_exif_turned_jpeg_is_read_as_the_station_reads_it(tmp_path: Path) -> None:
    """Found by a session-43 probe: cv2.imread turned the JPEG by its EXIF orientation, which the station, its viewer
    and its models do not: the thumbnail baseline saw the bright band at the top, the models at the left."""
    path = tmp_path / "turned.jpg"
    _jpeg_turned_by_exif(path)
    assert cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape == (64, 48)  # what a plain cv2.imread does
    station = read_image(path, "gray")
    assert station.shape == (48, 64)
    thumb = thumbnails([path], size=8)[0].reshape(8, 8)
    assert thumb[:, 0].mean() > 0.5 > thumb[0, 4:].mean()  # the band on the left, as the station sees it


def test_a_16_bit_image_keeps_its_range(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    img = np.full((16, 16), 1000, np.uint16)
    img[:, :8] = 60000
    assert cv2.imwrite(str(path), img)
    thumb = thumbnails([path], size=4)[0].reshape(4, 4)
    assert thumb[0, 0] > 0.9 and thumb[0, 3] < 0.05
