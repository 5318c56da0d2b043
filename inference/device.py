"""Choosing the torch device, for the runtime engine and the trainers alike.

It lives outside ``inference/training`` because runtime code never imports training code
(tests/test_layering.py); the trainers import it from here.
"""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)
