"""Would a free-or-defect head that reads the folder's unreviewed tiles as the free surface's examples (a
non-negative positive-unlabelled risk, Kiryo et al. 2017) lift the retrained head? Stage 1 of
benchmarks/results/pu.md (session 42, issue 20 item 1): runs the retrain command already made on
``lnclasses.split``'s train-only splits, their labels and unreviewed images, scored on their held-out sessions.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/pu_diagnostic.py [--pus] RUN.json ...

Columns: ``none`` (the command's kind of head on ``defect_bank`` at the run's C under its folder prior, tempered as
the command tempers label-next labels), ``pu`` (pu.md's candidate) and ``pn`` (its control without the unreviewed
images). Nothing here reads ``val``.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    RunLabels,
    Tiles,
    arguments,
    out_of_fold,
    print_variant_table,
    run_labels,
    tiles,
)


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_binary(xp: np.ndarray, ap: np.ndarray, xn: np.ndarray, xu: np.ndarray | None, pi: float, pi_u: float,
               c: float, n: int) -> tuple[np.ndarray, float]:
    """pu.md's free-or-defect head on standardised rows: positives ``xp`` weighted ``ap`` (sum 1), labelled negatives
    ``xn``, unreviewed rows ``xu`` (None: the ``pn`` control); its weights and bias (z > 0: defect)."""
    from scipy.optimize import minimize

    d = xp.shape[1]
    scale = 1.0 / (2.0 * c * n)

    def risk(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:d], params[d]
        zp, zn = xp @ w + b, xn @ w + b
        gz_p = -pi * ap * sigmoid(-zp)                      # positives' loss softplus(-z)
        value = pi * float(ap @ softplus(-zp))
        neg_weight = 1.0 if xu is None else 0.5
        value += (1 - pi) * neg_weight * float(softplus(zn).mean())
        gz_n = (1 - pi) * neg_weight * sigmoid(zn) / len(zn)
        gw, gb = xp.T @ gz_p + xn.T @ gz_n, float(gz_p.sum() + gz_n.sum())
        if xu is not None:
            zu = xu @ w + b
            neg_u = (float(softplus(zu).mean()) - pi_u * float(ap @ softplus(zp))) / (1 - pi_u)
            if neg_u > 0:   # the non-negative correction: a negative estimate counts as zero
                value += (1 - pi) * 0.5 * neg_u
                gz_u = (1 - pi) * 0.5 * sigmoid(zu) / len(zu) / (1 - pi_u)
                gz_pu = -(1 - pi) * 0.5 * pi_u * ap * sigmoid(zp) / (1 - pi_u)
                gw += xu.T @ gz_u + xp.T @ gz_pu
                gb += float(gz_u.sum() + gz_pu.sum())
        value += scale * float(w @ w)
        gw = gw + 2 * scale * w
        return value, np.concatenate([gw, [gb]])

    res = minimize(risk, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return res.x[:d], float(res.x[d])


def fit_multi(x: np.ndarray, y: np.ndarray, k: int, free: int, xu: np.ndarray | None, q_u: np.ndarray,
              c: float) -> tuple[np.ndarray, np.ndarray]:
    """pu.md's ``pum`` head on standardised rows ``x`` labelled ``y`` (``xu`` None: the ``pnm`` control): the
    class-balanced multinomial risk, the free class's half from the unreviewed rows ``xu`` less their defect shares
    ``q_u``; its (k, d) weights and (k,) biases (classes without labels get no row of their own: a very low bias)."""
    from scipy.optimize import minimize

    n, d = x.shape
    present = [cls for cls in range(k) if (y == cls).any()]
    onehot = np.eye(k)[y]
    row_w = np.zeros(n)
    for cls in present:   # each labelled class's loss weighs 1 / (classes with labels), its images equally
        row_w[y == cls] = 1.0 / (len(present) * (y == cls).sum())
    use_u = xu is not None and len(xu) > 0 and q_u[free] > 0 and free in present
    if use_u:
        row_w[y == free] *= 0.5
        # the unreviewed rows' free-class loss less each labelled defect class's share of it
        corr = np.zeros(n)
        for cls in present:
            if cls != free:
                corr[y == cls] = q_u[cls] / (y == cls).sum()
    scale = 1.0 / (2.0 * c * n)
    live = np.array([cls in present for cls in range(k)])

    def risk(params: np.ndarray) -> tuple[float, np.ndarray]:
        w = params[: k * d].reshape(k, d)
        b = params[k * d:]
        z = x @ w.T + b
        z[:, ~live] = -1e9
        lse = np.logaddexp.reduce(z, axis=1)
        p = np.exp(z - lse[:, None])
        value = float(row_w @ (lse - z[np.arange(n), y]))
        gz = row_w[:, None] * (p - onehot)
        if use_u:
            assert xu is not None
            zu = xu @ w.T + b
            zu[:, ~live] = -1e9
            lse_u = np.logaddexp.reduce(zu, axis=1)
            pu_ = np.exp(zu - lse_u[:, None])
            ce_free_lab = lse - z[:, free]
            est = (float((lse_u - zu[:, free]).mean()) - float(corr @ ce_free_lab)) / q_u[free]
            if est > 0:   # the non-negative correction
                wf = 0.5 / len(present)
                value += wf * est
                e_free = np.eye(k)[free]
                gzu = wf * (pu_ - e_free) / len(zu) / q_u[free]
                gz = gz - wf * corr[:, None] * (p - e_free) / q_u[free]
                gw_u, gb_u = gzu.T @ xu, gzu.sum(0)
            else:
                gw_u, gb_u = 0.0, 0.0
        else:
            gw_u, gb_u = 0.0, 0.0
        gw = gz.T @ x + gw_u + 2 * scale * w
        gb = gz.sum(0) + gb_u
        gw[~live] = 0.0
        gb = np.where(live, gb, 0.0)
        value += scale * float((w * w).sum())
        return value, np.concatenate([gw.ravel(), gb])

    res = minimize(risk, np.zeros(k * (d + 1)), jac=True, method="L-BFGS-B", options={"maxiter": 3000})
    w, b = res.x[: k * d].reshape(k, d), res.x[k * d:].copy()
    b[~live] = -1e9
    return w, b


def command_head(feats: np.ndarray, t: Tiles, r: RunLabels, temper: float) -> tuple[Any, np.ndarray, np.ndarray]:
    """The command's head on ``feats`` at the run's C (fitted on the run's labels), the unreviewed pool's mix by
    adjusted classify-and-count on the 200-image sample, and the folder's mix from it, raised to ``temper``."""
    from inference.training.classifier_head import adjusted_shares, fit_linear_head, folder_shares

    k, y = len(t.classes), t.y

    def fit(idx: np.ndarray, c: float = r.c):  # noqa: ANN202 - a LinearHead
        return fit_linear_head(feats[idx], y[idx], k, c)

    oof = out_of_fold(fit, feats, r)
    head = fit(r.labelled)
    predicted = (np.bincount(head.predict(feats[r.sample]), minlength=k) + 1.0) / (len(r.sample) + k)
    q_pool = adjusted_shares(predicted, y[r.labelled], oof, len(r.sample))
    q = folder_shares(q_pool, r.counts, len(r.unlabelled))
    if temper < 1.0:
        q = np.power(np.maximum(q, 1e-12), temper)
        q = q / q.sum()
    return head, q_pool, q


def scores(t: Tiles, r: RunLabels, temper: float) -> dict[str, tuple[float, float]]:
    """(accuracy, macro F1) on the run's scored sessions of ``none``, ``pu`` and ``pn``."""
    from sklearn.metrics import f1_score

    from inference.training.classifier_head import with_prior

    k, free = len(t.classes), t.classes.index("free")
    x, y = t.x, t.y
    head, q_pool, q = command_head(x, t, r, temper)
    prior_head = with_prior(head, q)
    truth = y[r.scored]
    proba = prior_head.proba(x[r.scored])
    out = {"none": proba.argmax(1)}

    pi, pi_u = 1.0 - float(q[free]), min(1.0 - float(q_pool[free]), 0.95)
    rows = np.concatenate([r.labelled, r.unlabelled])
    mu, sd = x[rows].mean(0), x[rows].std(0) + 1e-6
    z = (x - mu) / sd
    lab_y = y[r.labelled]
    pos = r.labelled[lab_y != free]
    neg = r.labelled[lab_y == free]
    counts = np.bincount(y[pos], minlength=k).astype(np.float64)
    ap = q[y[pos]] / counts[y[pos]]
    ap = ap / ap.sum()
    defect = np.arange(k) != free
    rest = proba[:, defect] / proba[:, defect].sum(1, keepdims=True)
    for name, xu in (("pu", z[r.unlabelled]), ("pn", None)):
        w, b = fit_binary(z[pos], ap, z[neg], xu, pi, pi_u, r.c, len(r.labelled))
        p_free = sigmoid(-(z[r.scored] @ w + b))
        six = np.zeros_like(proba)
        six[:, free] = p_free
        six[:, defect] = (1 - p_free)[:, None] * rest
        out[name] = six.argmax(1)
    with_labels = np.bincount(lab_y, minlength=k) > 0
    p_fit = np.where(with_labels, 1.0 / with_labels.sum(), 0.0)   # the balanced fit's own prior
    shift = np.where(with_labels, np.log(np.maximum(q, 1e-12)) - np.log(np.maximum(p_fit, 1e-12)), 0.0)
    for name, xu in (("pum", z[r.unlabelled]), ("pnm", None)):
        w, b = fit_multi(z[r.labelled], lab_y, k, free, xu, q_pool, r.c)
        out[name] = (z[r.scored] @ w.T + b + shift).argmax(1)
    return {n: (float((p == truth).mean()), float(f1_score(truth, p, average="macro"))) for n, p in out.items()}


def scores_pus(t: Tiles, r: RunLabels, chosen_share: float) -> dict[str, tuple[float, float]]:
    """(accuracy, macro F1) on the run's scored sessions of ``none`` and pu.md's third candidate ``pus``, the retrain
    command's own code (``inference.training.unreviewed_fit``): the 200-image pool, features standardised over the
    labelled rows, u = UNREVIEWED_WEIGHT * (1 - the share of labels label next chose)."""
    from sklearn.metrics import f1_score

    from inference.training.classifier_head import (
        LABEL_NEXT_TEMPER,
        UNREVIEWED_WEIGHT,
        with_prior,
    )
    from inference.training.unreviewed_fit import fit_with_unreviewed

    k = len(t.classes)
    mu, sd = t.x[r.labelled].mean(0), t.x[r.labelled].std(0) + 1e-6
    z = (t.x - mu) / sd
    y = t.y
    head, q_pool, q = command_head(z, t, r, 1.0 - LABEL_NEXT_TEMPER * chosen_share)
    pus, _ = fit_with_unreviewed(z[r.labelled], y[r.labelled], k, r.c, z[r.sample], q_pool,
                                 UNREVIEWED_WEIGHT * (1.0 - chosen_share))
    truth = y[r.scored]
    out = {"none": with_prior(head, q).predict(z[r.scored]), "pus": with_prior(pus, q).predict(z[r.scored])}
    return {n: (float((p == truth).mean()), float(f1_score(truth, p, average="macro"))) for n, p in out.items()}


GATE = {  # order -> (accuracy margin over none, macro F1 margin over none): pu.md's gate
    "per-class": (0.010, -0.005), "random": (-0.005, 0.0), "label-next": (-0.005, -0.005)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    third = "--pus" in argv   # pu.md's third candidate against the command's head (stage 1, information only)
    args = arguments([a for a in argv if a != "--pus"], __doc__, "lnclasses_command.py JSON files")
    warnings.filterwarnings("ignore")
    t = tiles(args.data, args.cache)
    res: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = {}
    for f in args.runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        chosen = 1.0 if r.order == "label-next" else 0.0   # every label-next run's labels were label next's
        got = scores_pus(t, r, chosen) if third else scores(t, r, 1.0 - 0.5 * chosen)
        row = res.setdefault((r.order, r.per_class), {n: [] for n in got})
        for n, v in got.items():
            row[n].append(v)
        print(f"{Path(f).name}: " + ", ".join(f"{n} {a:.3f}/{b:.3f}" for n, (a, b) in got.items()), flush=True)
    names = ["none", "pus"] if third else ["none", "pu", "pn", "pum", "pnm"]
    print_variant_table(res, names)
    print()
    for cand in names[1:]:
        fails = []
        for (order, per), row in sorted(res.items()):
            base, got = np.array(row["none"]).mean(0), np.array(row[cand]).mean(0)
            da, df = GATE[order]
            if got[0] < base[0] + da - 1e-12 or got[1] < base[1] + df - 1e-12:
                fails.append(f"{order} {per}: {got[0]:.3f}/{got[1]:.3f} against none {base[0]:.3f}/{base[1]:.3f}")
        print(f"{cand}: " + ("passes the gate" if not fails else "fails the gate: " + "; ".join(fails)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
