"""The fast CPU backend ("numba"): the JIT kernels of ``cpu_kernels`` behind an autograd Function.

Only the recurrence itself runs in the kernel. delta_bias/softplus before it and the D skip and
z gate after it are cheap elementwise torch ops whose gradients autograd already knows, so they
stay in torch (measured: they cost a few ms next to ~30 ms for the scan at 768×3136×16).

Precision: float32 inputs are computed in float32 (relative error ~1e-7 against the float64
reference; the recurrence is a contraction, so rounding does not grow with L); float64 stays
float64 (gradcheck); half and bfloat16 are upcast to float32 and the result cast back.
"""
from __future__ import annotations

import threading

import numba
import numpy as np
import torch

from . import speed
from .cpu_kernels import scan_backward, scan_forward, scan_forward_serial
from .reference import backend_from_recurrence

# Numba's parallel region must not be entered from two Python threads at once with every
# threading layer (workqueue aborts), and set_num_threads is per caller: serialise the calls.
_KERNEL_LOCK = threading.Lock()


_NONE = np.empty(0, np.float32)  # an absent delta_bias / D for the kernel

# Below this many state updates (b·d·L·n) a call finishes in tens of microseconds, less than
# waking the thread pool costs on a busy machine: it runs on the calling thread alone.
_SERIAL_BELOW = 1 << 16


def _kernel_threads(updates: int) -> int:
    """Numba's pool size, capped by torch's thread setting so one thread cap governs both."""
    if updates < _SERIAL_BELOW:
        return 1
    return max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))  # type: ignore[attr-defined]  # set at import


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def _swap_last_two(x: np.ndarray) -> torch.Tensor:
    """(..., n, L) <-> (..., L, n) as a contiguous copy. numpy, not torch: torch's copy of a
    transposed tensor with a short inner axis took ~8 ms at (1, 4, 16, 3136), numpy 0.1 ms."""
    return torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, -1, -2)))


class _NumbaScan(torch.autograd.Function):
    """y = scan(u, delta, A, B, C) with B, C as (b, g, n, L); states are never stored."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        Bt = _swap_last_two(B.detach().numpy())
        Ct = _swap_last_two(C.detach().numpy())
        u_, delta_, A_ = (x.detach().contiguous() for x in (u, delta, A))
        y = torch.empty_like(u_)
        with _KERNEL_LOCK:
            numba.set_num_threads(_kernel_threads(u_.numel() * A_.shape[1]))
            scan_forward(u_.numpy(), delta_.numpy(), A_.numpy(), Bt.numpy(), Ct.numpy(), y.numpy(), _NONE, _NONE, False)
        ctx.save_for_backward(u_, delta_, A_, Bt, Ct)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, Bt, Ct = ctx.saved_tensors
        b, d, L = u.shape
        g, n = Bt.shape[1], Bt.shape[3]
        threads = _kernel_threads(u.numel() * n)
        # Enough (batch, group, part) work items to keep every thread busy; parts > 1 only
        # when b·g alone is too few, since each part costs a (b, g, L, n) partial buffer.
        parts = max(1, min(d // g, -(-threads // (b * g))))
        du = torch.empty_like(u)
        ddelta = torch.empty_like(u)
        dA_part = np.empty((b, d, n), dtype=np.float64)
        dB_part = torch.zeros((parts, b, g, L, n), dtype=u.dtype)
        dC_part = torch.zeros((parts, b, g, L, n), dtype=u.dtype)
        with _KERNEL_LOCK:
            numba.set_num_threads(threads)
            scan_backward(
                u.numpy(), delta.numpy(), A.numpy(), Bt.numpy(), Ct.numpy(), _np(dy.to(u.dtype)),
                du.numpy(), ddelta.numpy(), dA_part, dB_part.numpy(), dC_part.numpy(),
            )
        dA = torch.from_numpy(dA_part.sum(0)).to(A.dtype)
        dB = _swap_last_two(dB_part.sum(0).numpy())
        dC = _swap_last_two(dC_part.sum(0).numpy())
        return du, ddelta, dA, dB, dC


def _numba_recurrence(u, delta, A, B, C) -> torch.Tensor:
    if u.device.type != "cpu":
        raise ValueError(f"the 'numba' scan backend runs on CPU tensors, got {u.device}")
    return _NumbaScan.apply(u, delta, A, B, C)


_selective_scan_autograd = backend_from_recurrence(
    _numba_recurrence, "CPU tensors only; same contract as ``selective_scan`` (shapes already checked there)."
)


def _inference_scan(u, delta, A, B, C, D, delta_bias, delta_softplus) -> torch.Tensor:
    """The whole scan in one kernel call: delta's bias and softplus and the D skip inside the kernel."""
    Bt = _swap_last_two((B if B.dim() == 4 else B.unsqueeze(1)).numpy())
    Ct = _swap_last_two((C if C.dim() == 4 else C.unsqueeze(1)).numpy())
    u_, delta_, A_ = (x.contiguous() for x in (u, delta, A))
    bias = _NONE if delta_bias is None else delta_bias.float().contiguous().numpy()
    skip = _NONE if D is None else D.float().contiguous().numpy()
    y = torch.empty_like(u_)
    args = (u_.numpy(), delta_.numpy(), A_.numpy(), Bt.numpy(), Ct.numpy(), y.numpy(), bias, skip, bool(delta_softplus))
    threads = _kernel_threads(u_.numel() * A_.shape[1])
    if threads == 1:  # no parallel region: no lock, so the engine's lanes (ADR 0041) never wait here
        scan_forward_serial(*args)
        return y
    with _KERNEL_LOCK:
        numba.set_num_threads(threads)
        scan_forward(*args)
    return y


def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """CPU tensors only; same contract as ``selective_scan`` (shapes already checked there).

    Inference (float32, no z gate, no gradient wanted) runs the fused kernel; anything else goes
    through the autograd Function with the elementwise parts in torch.
    """
    tensors = [t for t in (u, delta, A, B, C, D, delta_bias) if t is not None]
    if (speed.enabled() and z is None and u.device.type == "cpu"
            and all(t.dtype == torch.float32 for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))):
        return _inference_scan(u, delta, A, B, C, D, delta_bias, delta_softplus)
    return _selective_scan_autograd(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
