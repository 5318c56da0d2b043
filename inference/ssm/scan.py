"""Selective-scan front door: one signature (mamba-ssm's), several backends.

``selective_scan`` checks shapes once (clear ``ValueError``s instead of a broadcasting error deep
inside a kernel), runs the chosen backend, and refuses a non-finite result: a NaN or Inf in any
input reaches the output of every backend, so checking the output (one pass over (b, d, L)) is
enough to guarantee that bad input never comes back as finite-looking numbers.

``backend=None`` picks the best backend for the tensors' device (see ``default_backend``); the
choice is logged once per device type at INFO and can be queried with ``active_backend``.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .cpu_scan import selective_scan_numba
from .cuda_scan import cuda_unavailable_reason, selective_scan_cuda
from .reference import selective_scan_reference
from .torch_scan import selective_scan_torch

log = logging.getLogger(__name__)

ScanFn = Callable[..., torch.Tensor]
BACKENDS: dict[str, ScanFn] = {
    "reference": selective_scan_reference,
    "numba": selective_scan_numba,
    "torch": selective_scan_torch,
    "cuda": selective_scan_cuda,
}
_LOGGED: set[str] = set()


def default_backend(device: torch.device | str) -> str:
    """The backend ``backend=None`` runs on tensors of this device.

    CPU: the numba kernels (fastest there, O(b·d·L) memory). CUDA: mamba-ssm's fused kernel when
    the package imports, else the chunked torch scan. Anything else (mps, …): the torch scan.
    """
    kind = torch.device(device).type
    if kind == "cpu":
        return "numba"
    if kind == "cuda" and cuda_unavailable_reason() is None:
        return "cuda"
    return "torch"


def active_backend(device: torch.device | str = "cpu") -> str:
    """Name of the backend ``selective_scan(..., backend=None)`` uses for this device (logged once)."""
    name = default_backend(device)
    kind = torch.device(device).type
    if kind not in _LOGGED:
        _LOGGED.add(kind)
        why = "" if kind != "cuda" or name == "cuda" else f" ({cuda_unavailable_reason()})"
        log.info("selective scan on %s tensors uses the %r backend%s", kind, name, why)
    return name


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, d, L), got shape {tuple(u.shape)}")
    b, d, L = u.shape
    if L < 1:
        raise ValueError("selective_scan: sequence length L must be at least 1")
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta {tuple(delta.shape)} must match u {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A must be (d={d}, n), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, x in (("B", B), ("C", C)):
        if x.dim() == 3:
            ok = x.shape == (b, n, L)
        elif x.dim() == 4:
            ok = x.shape[0] == b and x.shape[2:] == (n, L) and x.shape[1] >= 1
            if ok and d % x.shape[1] != 0:
                raise ValueError(f"selective_scan: d={d} channels do not split into {x.shape[1]} groups of {name}")
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"selective_scan: {name} must be (b={b}, n={n}, L={L}) or (b, groups, n, L), got {tuple(x.shape)}"
            )
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"selective_scan: B has {B.shape[1]} groups but C has {C.shape[1]}")
    if D is not None and D.shape != (d,):
        raise ValueError(f"selective_scan: D must be (d={d},), got {tuple(D.shape)}")
    if delta_bias is not None and delta_bias.shape != (d,):
        raise ValueError(f"selective_scan: delta_bias must be (d={d},), got {tuple(delta_bias.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z {tuple(z.shape)} must match u {tuple(u.shape)}")
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    if len({t.device for t in tensors}) > 1:
        raise ValueError("selective_scan: all inputs must be on the same device")
    if any(not t.is_floating_point() for t in tensors):
        raise ValueError("selective_scan: all inputs must be floating-point tensors")


def _name_non_finite(**inputs: torch.Tensor | None) -> str:
    bad = [k for k, v in inputs.items() if v is not None and not bool(torch.isfinite(v).all())]
    return ", ".join(bad) if bad else "none of the inputs (the state overflowed: A > 0 or huge delta?)"


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """mamba-ssm's ``selective_scan_fn``: u, delta (b, d, L); A (d, n); B, C (b, n, L) or (b, g, n, L).

    Returns y (b, d, L) in u's dtype. Raises ValueError for inconsistent shapes, an unknown
    backend, or a non-finite result (naming the inputs that hold NaN/Inf).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = backend or active_backend(u.device)
    if name not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {name!r}; available: {sorted(BACKENDS)}")
    y = BACKENDS[name](u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    # A sum is a NaN/Inf exactly when some element is (or, rarely, when finite values overflow
    # it): one fast reduction, ~5x cheaper than isfinite().all(); confirm before raising.
    if not bool(torch.isfinite(y.sum())) and not bool(torch.isfinite(y).all()):
        culprits = _name_non_finite(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
        raise ValueError(f"selective_scan: non-finite output; non-finite values in: {culprits}")
    return y
