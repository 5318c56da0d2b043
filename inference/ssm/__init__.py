"""Selective state-space scan (S6) backends and the SS2D block built on them."""
from .cross_scan import cross_merge, cross_scan
from .reference import selective_scan_reference
from .scan import BACKENDS, active_backend, default_backend, selective_scan
from .ss2d import SS2D

__all__ = ["BACKENDS", "active_backend", "default_backend", "SS2D", "cross_merge", "cross_scan", "selective_scan", "selective_scan_reference"]
