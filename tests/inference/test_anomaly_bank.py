"""Memory-bank term of the pattern anomaly model: kNN, coreset, checkpoints, large defects, the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models.memory_bank import greedy_coreset, knn_distance
from inference.models.pattern_anomaly import PatternAnomaly, preset
from inference.models.pattern_anomaly_fit import with_memory_bank
from inference.training.anomaly_bank import BankOptions, add_bank
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def _tiny(**kw) -> PatternAnomaly:
    torch.manual_seed(0)
    return PatternAnomaly(preset("test_tiny", **kw)).eval()


def _stripes(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Vertical stripes with a random phase and mild noise (normalised input, 3 channels)."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[:size, :size][1]
    imgs = [np.sin(xx * 2 * np.pi / 6 + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.05, (size, size)) for _ in range(n)]
    return torch.as_tensor(np.repeat(np.stack(imgs)[:, None], 3, 1), dtype=torch.float32)


def _banked(model: PatternAnomaly, good: torch.Tensor, **settings) -> PatternAnomaly:
    rows = torch.cat([model.token_features(good, oy, ox).flatten(0, 4) for oy in (0, 4) for ox in (0, 4)])
    return with_memory_bank(model, rows[greedy_coreset(rows, 200)], **settings)


def test_knn_distance_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(300, 10, generator=g), torch.randn(120, 10, generator=g)
    full = torch.cdist(q.double(), bank.double())
    for k in (1, 3):
        ref = full.sort(1).values[:, :k].mean(1)
        torch.testing.assert_close(knn_distance(q, bank, k, chunk=64).double(), ref, rtol=1e-4, atol=1e-4)
    qids, bids = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (120,), generator=g)
    ref = full.masked_fill(qids[:, None] == bids[None], float("inf")).min(1).values
    torch.testing.assert_close(knn_distance(q, bank, 1, chunk=50, query_ids=qids, bank_ids=bids).double(), ref,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="k must be"):
        knn_distance(q, bank, 121)


def test_greedy_coreset_takes_far_points_first():
    rows = torch.cat([torch.zeros(50, 2), torch.tensor([[10.0, 0.0], [0.0, 10.0]])])
    sel = greedy_coreset(rows, 3)
    assert len(set(sel.tolist())) == 3 and {50, 51} <= set(sel.tolist())
    assert greedy_coreset(rows, 99).tolist() == list(range(52))


def test_bank_saved_and_loaded_identically(tmp_path):
    m = _banked(_tiny(), _stripes(3, 24), bank_k=2, bank_position=0.5, bank_fusion="max", bank_weight=2.0)
    x = _stripes(2, 24, seed=5)
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    loaded = load_model(tmp_path / "m")
    assert loaded.config == m.config and loaded.config.bank_size == 200
    torch.testing.assert_close(loaded.model.memory_bank, m.memory_bank, rtol=0, atol=0)
    torch.testing.assert_close(loaded.model.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    fused = torch.maximum(m.prediction_map(x), 2.0 * m.bank_map(x))
    torch.testing.assert_close(m.anomaly_map(x), fused)


def test_model_without_bank_is_unchanged(tmp_path):
    m = _tiny()
    assert not any(k.startswith(("memory_bank", "bank_map")) for k in m.state_dict())
    x = _stripes(2, 24, seed=5)
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    for key in [k for k in meta["config"] if k.startswith("bank_")]:  # a config written before the bank existed
        del meta["config"][key]
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    loaded = load_model(tmp_path / "m")
    torch.testing.assert_close(loaded.model.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    banked = _banked(m, _stripes(3, 24))
    torch.testing.assert_close(banked.prediction_map(x), m.anomaly_map(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="no memory bank"):
        m.raw_bank_map(x)


def test_broken_bank_tensor_is_refused_clearly(tmp_path):
    m = _banked(_tiny(), _stripes(3, 24))
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    save_file(state | {"memory_bank": state["memory_bank"][:10].contiguous()}, str(weights))
    with pytest.raises(CheckpointError, match=r"wrong shapes: memory_bank \(10, 18\) \(model expects \(200, 18\)\)"):
        load_model(tmp_path / "m")
    bad = state["memory_bank"].clone()
    bad[3, 4] = float("nan")
    save_file(state | {"memory_bank": bad}, str(weights))
    with pytest.raises(CheckpointError, match="non-finite values in memory_bank"):
        load_model(tmp_path / "m")
    save_file({k: v for k, v in state.items() if k != "memory_bank"}, str(weights))
    with pytest.raises(CheckpointError, match="missing tensors: memory_bank"):
        load_model(tmp_path / "m")


def test_bank_term_flags_a_large_defect_whose_context_is_altered_too():
    """Half the part's width washed out: every neighbour of a cell inside is anomalous too (a
    prediction from such context is as flat as the defect), yet each token there is far from
    every good token, so the bank map lights the block from edge to centre."""
    m = _tiny(image_size=32)
    good = _stripes(6, 32)
    banked = _banked(m, good)
    bad = _stripes(1, 32, seed=9)
    bad[:, :, 8:24, 8:24] = 2.5 + 0.05 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    amap = banked.raw_bank_map(bad)[0]
    inside = amap[10:22, 10:22]
    outside = torch.ones_like(amap, dtype=torch.bool)
    outside[4:28, 4:28] = False
    assert float(inside.min()) > float(amap[outside].max())
    assert float(inside.min()) > float(banked.raw_bank_map(_stripes(3, 32, seed=4)).max())


def test_add_bank_and_train_with_memory_bank(tmp_path, capsys):
    from tests.inference.test_anomaly_workflow import train_tiny_card

    cat, out, card = train_tiny_card(tmp_path, capsys, "model", "--memory-bank", "--no-evaluate")
    info = card["memory_bank"]
    assert info["validation"][0]["fusion"] == "none" and len(info["validation"]) == 1 + 2 * 2 * 5
    assert load_model(out).config.bank_size == info["rows"]
    # The command on an existing model: a bank forced by leaving only bank settings to choose from.
    card2 = add_bank(out, cat, tmp_path / "m2", BankOptions(size=64, positions=(0.0,), ks=(1,)), log=lambda s: None)
    loaded = load_model(tmp_path / "m2")
    assert loaded.card["recalibrations"][-1]["before"]["memory_bank"] == info
    assert card2["memory_bank"]["rows"] == loaded.config.bank_size in (0, 64)
    assert card2["threshold"]["image"] == loaded.card["threshold"]["image"]


def test_knn_smallest_pass_equals_topk_with_ties_and_left_out_rows():
    """The one-pass k-smallest of issue 21 returns exactly topk's values, also with tied
    distances (duplicate bank rows) and rows left out as inf (leave-one-image-out)."""
    from inference.ssm import speed

    g = torch.Generator().manual_seed(1)
    bank = torch.randn(200, 6, generator=g)
    bank = torch.cat([bank, bank[:50]])  # ties
    q = torch.cat([torch.randn(90, 6, generator=g), bank[:10]])
    qids, bids = torch.randint(0, 3, (100,), generator=g), torch.randint(0, 3, (250,), generator=g)
    for k in (2, 3, 5):
        fast = knn_distance(q, bank, k, chunk=37, query_ids=qids, bank_ids=bids)
        speed.set_enabled(False)
        try:
            before = knn_distance(q, bank, k, chunk=37, query_ids=qids, bank_ids=bids)
        finally:
            speed.set_enabled(True)
        assert torch.equal(fast, before)
