"""The "cuda" backend: mamba-ssm's fused selective-scan kernel, when the package imports.

``import mamba_ssm`` fails wherever its compiled extension is missing (every CPU-only station),
and can fail in other ways on a broken install, so any exception on import just marks the
backend unavailable, with the reason kept for the log and for test skips.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch


@functools.cache
def _load() -> tuple[Callable | None, str | None]:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return None, f"mamba_ssm does not import: {type(exc).__name__}: {exc}"
    return selective_scan_fn, None


def cuda_unavailable_reason() -> str | None:
    """None when the fused kernel can run; otherwise why not (no GPU, or mamba_ssm missing)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return _load()[1]


def selective_scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """CUDA tensors only. The kernel wants contiguous inputs and float32 A, D and delta_bias."""
    if u.device.type != "cuda":
        raise ValueError(f"the 'cuda' scan backend needs CUDA tensors, got {u.device}")
    fn, reason = _load()
    if fn is None:
        raise ValueError(f"the 'cuda' scan backend is unavailable: {reason}")
    f32 = (lambda x: None if x is None else x.float().contiguous())
    y = fn(
        u.contiguous(), delta.contiguous(), f32(A), B.contiguous(), C.contiguous(),
        D=f32(D), z=None if z is None else z.contiguous(), delta_bias=f32(delta_bias),
        delta_softplus=delta_softplus,
    )
    return y.to(u.dtype)
