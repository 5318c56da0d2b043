"""Step-by-step selective scan: the slow, obviously correct definition every backend is tested against.

Iterates over ``unbind``-ed time slices rather than indexing ``x[:, :, t]`` so that autograd's
backward stays O(L) (indexing allocates a full-size gradient at every step).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else (half, bf16, float32) runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool, work: torch.dtype) -> torch.Tensor:
    """delta (+ bias per channel) (-> softplus), as every backend does before the recurrence."""
    delta = delta.to(work)
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[None, :, None]
    return F.softplus(delta) if softplus else delta


def skip_and_gate(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """y + D*u, then * silu(z): the elementwise tail after the recurrence (y and u in the work dtype)."""
    if D is not None:
        y = torch.addcmul(y, u, D.to(y.dtype)[None, :, None])
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


Recurrence = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def backend_from_recurrence(recurrence: Recurrence, doc: str) -> Callable[..., torch.Tensor]:
    """A backend with ``selective_scan``'s signature around ``recurrence(u, delta, A, B, C)``.

    The recurrence gets work-dtype tensors with delta already biased/softplus-ed and B, C always
    grouped (b, g, n, L); the wrapper adds the D skip and z gate and casts back to u's dtype.
    """

    def backend(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        work = work_dtype(u.dtype)
        u_w = u.to(work)
        delta_w = prepare_delta(delta, delta_bias, delta_softplus, work)
        B_w = (B if B.dim() == 4 else B.unsqueeze(1)).to(work)
        C_w = (C if C.dim() == 4 else C.unsqueeze(1)).to(work)
        y = recurrence(u_w, delta_w, A.to(work), B_w, C_w)
        return skip_and_gate(y, u_w, D, z).to(u.dtype)

    backend.__doc__ = doc
    return backend


def _step_loop(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The recurrence one time step at a time; B, C grouped (b, g, n, L).

    Series are made time-major first so that every step reads contiguous slices, and channels
    are viewed as (groups, channels per group) so B_t, C_t broadcast instead of being copied per
    channel: the loop is a fair baseline for the benchmarks, not a strawman.
    """
    b, d, L = u.shape
    g, n = B.shape[1], B.shape[2]
    p = d // g
    per_step = [x.reshape(b, g, p, L).permute(3, 0, 1, 2).contiguous() for x in (u, delta)]
    B_steps, C_steps = (x.permute(3, 0, 1, 2).unsqueeze(3).contiguous() for x in (B, C))
    A = A.view(g, p, n)
    h = u.new_zeros(b, g, p, n)
    ys = []
    for u_t, dt_t, B_t, C_t in zip(*(x.unbind(0) for x in (*per_step, B_steps, C_steps))):
        h = torch.exp(dt_t[..., None] * A) * h + (dt_t * u_t)[..., None] * B_t
        ys.append((h * C_t).sum(-1))
    return torch.stack(ys, dim=-1).reshape(b, d, L)


selective_scan_reference = backend_from_recurrence(
    _step_loop, "The definition: a Python loop over time steps; any device, any float dtype."
)
