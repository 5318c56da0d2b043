"""The Qt binding must keep Python's reference counts (ADR 0007).

PySide6-Essentials 6.12.0 returns ``None`` from void methods without a reference on Python
3.11, which aborted the station after a few thousand painter calls; pyproject pins < 6.12.
This test is the check named in the ADR for lifting that cap: it fails on a faulty binding.
"""
from __future__ import annotations

import sys

from PySide6.QtGui import QImage, QPainter, QPen


def test_void_calls_do_not_drain_none(qapp) -> None:
    image = QImage(8, 8, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    try:
        before = sys.getrefcount(None)
        for _ in range(1000):
            painter.setPen(QPen())
        drop = before - sys.getrefcount(None)
    finally:
        painter.end()
    assert drop < 100, f"None lost {drop} references in 1000 void Qt calls (faulty PySide6 build)"
