"""MemoryMamba's training objective: L = CE + λc · L_contrastive (coarse) + λf · L_NCE (fine).

Reading of the printed contrastive formula (paper eq. 23)::

    L = Σ_k Σ_{j≠k} max(0, δ − cos(h_{c,k}, h_{c,j}))

Taken literally it is smallest when different classes' coarse queries point the *same* way,
which contradicts the sentence beside it ("δ is a margin that defines the minimum acceptable
distance between classes"). We read cos(·,·) there as the cosine *distance* 1 − cos, so the
hinge penalises pairs of samples from different classes whose coarse queries are closer than
the margin::

    L_contrastive = mean over pairs (i, j) with y_i ≠ y_j of max(0, δ − (1 − cos(h_i, h_j)))

With δ = 1 this pushes different classes' queries to non-positive cosine. Pairs are formed
between the samples of a batch (the paper's per-class h_{c,k} are not defined further); a batch
with a single class contributes zero.

L_NCE (eq. 24): InfoNCE between each sample's pooled intermediate feature Z and the MLP of its
own pooled fine-memory read-out M̄_f, the other samples' read-outs in the batch being the
negatives; cosine similarity over a temperature (0.5, as in the authors' code). Both auxiliary
losses are averaged over the blocks that have that memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inference.models.memory_mamba import BlockAux, MemoryMambaConfig, MemoryOutput


def coarse_contrastive_loss(queries: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge on the cosine distance of different-class pairs (see module docstring)."""
    q = F.normalize(queries, dim=-1, eps=1e-6)
    cos = q @ q.T
    different = labels[:, None] != labels[None, :]
    if not bool(different.any()):
        return queries.sum() * 0.0
    hinge = torch.clamp(margin - (1.0 - cos), min=0.0)
    return hinge[different].mean()


def info_nce_loss(features: torch.Tensor, readouts: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each feature's positive is its own read-out; the batch's other read-outs are negatives."""
    z = F.normalize(features, dim=-1, eps=1e-6)
    m = F.normalize(readouts, dim=-1, eps=1e-6)
    logits = z @ m.T / temperature
    target = torch.arange(z.shape[0], device=z.device)
    return F.cross_entropy(logits, target)


@dataclass
class LossParts:
    total: torch.Tensor
    cls: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "cls", "coarse", "fine")}


def _mean(values: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack(values).mean() if values else like.new_zeros(())


def memory_mamba_loss(
    out: MemoryOutput,
    labels: torch.Tensor,
    cfg: MemoryMambaConfig,
    class_weights: torch.Tensor | None = None,
) -> LossParts:
    cls = F.cross_entropy(out.logits, labels, weight=class_weights, label_smoothing=cfg.label_smoothing)
    aux: list[BlockAux] = out.aux
    coarse = _mean(
        [coarse_contrastive_loss(a.coarse_query, labels, cfg.contrastive_margin) for a in aux if a.coarse_query is not None],
        cls,
    )
    fine = _mean(
        [
            info_nce_loss(a.fine_feature, a.fine_readout, cfg.nce_temperature)
            for a in aux
            if a.fine_feature is not None and a.fine_readout is not None
        ],
        cls,
    )
    total = cls + cfg.lambda_coarse * coarse + cfg.lambda_fine * fine
    return LossParts(total, cls, coarse, fine)
