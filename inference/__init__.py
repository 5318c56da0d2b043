"""Models and inference: no Qt, no SQLAlchemy (see tests/test_layering.py).

The home of the largest image the station reads, and of OpenCV's decompression-bomb guard for it: OpenCV reads
``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when ``cv2`` is imported, and this package's modules (and ``app``, which imports
this package first) import ``cv2`` at their top, so the variable is set here, before any of them can. Set in
``inference/imageio.py`` after its ``import cv2`` it never took effect: a 431 KB PNG of 20000 x 20000 was decoded
whole (807 MB) before the shape check refused it (a session-52 audit). ``read_raw`` also refuses such an image from
its header before decoding, so the guard is the second line, not the only one.
"""
import os

MAX_PIXELS = 200_000_000  # ~14k x 14k: beyond this a station runs out of memory, not patience
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
