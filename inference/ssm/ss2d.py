"""VMamba's 2-D selective scan block (SS2D), shared by all three model families.

Input and output are channels-last ``(b, h, w, c)``. The four scan directions run as one scan
over ``4 * d_inner`` channels with grouped B/C (one group per direction), so a single backend
call does all the work: on a CPU the numba kernels then spread 4·d_inner channels over the
threads, and mamba-ssm's kernel takes grouped B/C natively. ``backend`` (None = per-device
default, see ``inference.ssm.active_backend``) can be set per block, e.g. "reference" in tests.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import speed
from .cross_scan import cross_merge, cross_scan
from .scan import selective_scan

K_DIRECTIONS = 4


class SS2D(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: float = 2.0,
        d_conv: int = 3,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend
        k = K_DIRECTIONS

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
        self.x_proj_weight = nn.Parameter(
            torch.empty(k, self.dt_rank + 2 * d_state, d_inner).uniform_(-1, 1) / math.sqrt(d_inner)
        )
        dt_std = self.dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, self.dt_rank).uniform_(-dt_std, dt_std))
        dt = torch.exp(
            torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(A))
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)
        xs = F.silu(self.conv2d(xs.permute(0, 3, 1, 2).contiguous()))
        y = self.scan_2d(xs)  # (b, d_inner, h*w)
        y = self.out_norm(y.transpose(1, 2).reshape(b, h, w, self.d_inner))
        return self.out_proj(y * F.silu(z))

    def scan_2d(self, x: torch.Tensor) -> torch.Tensor:
        """(b, d_inner, h, w) -> (b, d_inner, h*w): cross-scan, selective scan, cross-merge."""
        b, d, h, w = x.shape
        L = h * w
        k = K_DIRECTIONS
        xs = cross_scan(x)  # (b, k, d, L)
        if speed.enabled():
            # B and C as transposed views of (b, k, L, n) rows: the CPU kernel reads exactly that
            # layout, so neither a .contiguous() here nor its transpose back there copies them.
            x_dbl = torch.einsum("bkdl,kcd->bklc", xs, self.x_proj_weight)
            dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=3)
            dts = torch.einsum("bklr,kdr->bkdl", dts, self.dt_projs_weight)
            Bs, Cs = Bs.transpose(2, 3), Cs.transpose(2, 3)
        else:
            x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
            dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
            dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
            Bs, Cs = Bs.contiguous(), Cs.contiguous()
        A = -torch.exp(self.A_logs.float())
        ys = selective_scan(
            xs.reshape(b, k * d, L),
            dts.reshape(b, k * d, L),
            A,
            Bs,
            Cs,
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float(),
            delta_softplus=True,
            backend=self.backend,
        )
        return cross_merge(ys.view(b, k, d, L), h, w)
