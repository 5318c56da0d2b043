"""SS2D's four-direction unrolling of a feature map, as plain tensor ops (works on any device)."""
from __future__ import annotations

import torch


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) -> (b, 4, c, h*w): row-major, column-major, and both reversed."""
    b, c, h, w = x.shape
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    fwd = torch.stack([rows, cols], dim=1)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(b, 4, c, h*w) -> (b, c, h*w): undo each direction's order and sum (adjoint of cross_scan)."""
    b, k, c, L = y.shape
    y = y[:, 0:2] + y[:, 2:4].flip(-1)
    rows = y[:, 0]
    cols = y[:, 1].view(b, c, w, h).transpose(2, 3).flatten(2)
    return rows + cols
