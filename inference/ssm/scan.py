"""Selective-scan front door: one signature (mamba-ssm's), several backends.

Backends are registered in ``BACKENDS``; ``backend=None`` picks the best one available for the
tensors' device. The helper owning this module adds the fast CPU, torch-GPU and CUDA backends.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .reference import selective_scan_reference

log = logging.getLogger(__name__)

ScanFn = Callable[..., torch.Tensor]
BACKENDS: dict[str, ScanFn] = {"reference": selective_scan_reference}


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend=None):
    fn = BACKENDS[backend or "reference"]
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
