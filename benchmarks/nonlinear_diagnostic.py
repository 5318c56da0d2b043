"""Would a non-linear head on the same features lift the random order's accuracy? A diagnostic on runs the retrain
command already made on ``lnclasses.split``'s train-only splits (their ``labelled_files``), nothing chosen
(session 20, information for issue 20 item 1: 0.85 at 40 labels per class in the random order is not met).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/nonlinear_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json

For each run: its labelled images' ``defect_bank`` features (the candidate those runs chose most), and on the scored
sessions the accuracy and macro F1 of

- ``linear``: the class-balanced logistic regression with the run's C (as the command fits it), the folder's mix by
  adjusted classify-and-count as its prior (ADR 0045; out-of-fold predictions by capture-session folds);
- ``rff``: the same regression on random Fourier features of the standardised features (an RBF kernel's
  approximation, 2,000 features, seed 0), its C and kernel width chosen by the same group folds inside the labels
  (macro F1), the same kind of prior;
- ``svm``: scikit-learn's RBF SVC (class-balanced, C and width chosen the same way) with Platt probabilities and the
  same prior, as a reference for what a kernel gives.

A non-linear head that wins here would still have to be written as a candidate and decided on fresh seeds with the
real command.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import arguments, tiles  # noqa: E402

GAMMAS = (0.25, 0.5, 1.0, 2.0)   # kernel width as a multiple of 1 / dim (scikit-learn's "scale" on standardised data)
CS = (0.1, 1.0, 10.0, 100.0)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "lnclasses_command.py JSON files (random order)")
    warnings.filterwarnings("ignore")
    from sklearn.metrics import f1_score
    from sklearn.svm import SVC

    from benchmarks.lnclasses import split
    from inference.training.classifier_head import adjusted_shares, fit_linear_head, folder_shares, with_prior
    from inference.training.groups import group_folds

    t = tiles(args.data, args.cache)
    paths, y, rel, sess, x = t.paths, t.y, t.rel, t.sess, t.x
    k = len(t.classes)

    def rff(z: np.ndarray, gamma: float, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(0)
        w = rng.standard_normal((z.shape[1], 2000)) * np.sqrt(2 * gamma / z.shape[1])
        b = rng.uniform(0, 2 * np.pi, 2000)
        return np.sqrt(2 / 2000) * np.cos(((z - mu) / sd) @ w + b)

    res: dict[str, list[tuple[float, float]]] = {}

    def one(d: dict) -> dict[str, tuple[float, float]]:
        """The three heads' (accuracy, macro F1) on one run's scored sessions."""
        out: dict[str, tuple[float, float]] = {}
        scored = split("magnetic_tile", paths, int(d["seed"]))
        sc = np.flatnonzero(scored)
        lab = np.array([rel[r] for r in d["labelled_files"]])
        unl = np.setdiff1d(np.flatnonzero(~scored), lab)
        sample = np.random.default_rng(0).permutation(unl)[:200]
        counts = np.bincount(y[lab], minlength=k)
        folds = list(group_folds(y[lab], list(sess[lab]), 5, 0))
        mu, sd = x[lab].mean(0), x[lab].std(0) + 1e-6

        def prior(pool_pred: np.ndarray, oof: np.ndarray) -> np.ndarray:
            predicted = (np.bincount(pool_pred, minlength=k) + 1.0) / (len(pool_pred) + k)
            return folder_shares(adjusted_shares(predicted, y[lab], oof, len(pool_pred)), counts, len(unl))

        def linear_on(feats: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
            """(out-of-fold predictions, scored-session predictions under the folder prior)."""
            oof = np.zeros(len(lab), int)
            for tr, te in folds:
                oof[te] = fit_linear_head(feats[lab[tr]], y[lab[tr]], k, c).predict(feats[lab[te]])
            head = fit_linear_head(feats[lab], y[lab], k, c)
            q = prior(head.predict(feats[sample]), oof)
            return oof, with_prior(head, q).predict(feats[sc])

        def scores(pred: np.ndarray) -> tuple[float, float]:
            return float((pred == y[sc]).mean()), float(f1_score(y[sc], pred, average="macro"))

        c = float(d["card_training"]["head"].get("C") or 10.0)
        out["linear"] = scores(linear_on(x, c)[1])

        best: tuple[float, float, float] | None = None   # (cv F1, gamma, C)
        for g in GAMMAS:
            z = rff(x, g, mu, sd)
            for cc in CS:
                oof = np.zeros(len(lab), int)
                for tr, te in folds:
                    oof[te] = fit_linear_head(z[lab[tr]], y[lab[tr]], k, cc).predict(z[lab[te]])
                f1 = float(f1_score(y[lab], oof, average="macro"))
                if best is None or f1 > best[0]:
                    best = (f1, g, cc)
        assert best is not None
        out["rff"] = scores(linear_on(rff(x, best[1], mu, sd), best[2])[1])

        zs = (x - mu) / sd
        best = None
        for g in GAMMAS:
            for cc in CS:
                oof = np.zeros(len(lab), int)
                for tr, te in folds:
                    oof[te] = SVC(C=cc, gamma=g / x.shape[1], class_weight="balanced").fit(
                        zs[lab[tr]], y[lab[tr]]).predict(zs[lab[te]])
                f1 = float(f1_score(y[lab], oof, average="macro"))
                if best is None or f1 > best[0]:
                    best = (f1, g, cc)
        assert best is not None
        oof = np.zeros(len(lab), int)
        for tr, te in folds:
            oof[te] = SVC(C=best[2], gamma=best[1] / x.shape[1], class_weight="balanced").fit(
                zs[lab[tr]], y[lab[tr]]).predict(zs[lab[te]])
        svm = SVC(C=best[2], gamma=best[1] / x.shape[1], class_weight="balanced", probability=True,
                  random_state=0).fit(zs[lab], y[lab])
        q = prior(svm.predict(zs[sample]), oof)
        post = svm.predict_proba(zs[sc])   # Platt posteriors under the balanced fit: shift to the folder's mix
        present = svm.classes_
        shifted = post * (q[present] * len(present))
        out["svm"] = scores(present[shifted.argmax(1)])
        return out

    for f in args.runs:
        for name, v in one(json.loads(Path(f).read_text())).items():
            res.setdefault(name, []).append(v)
        print(f"{Path(f).name}: " + ", ".join(f"{n} {v[-1][0]:.3f}/{v[-1][1]:.3f}" for n, v in res.items()), flush=True)

    print("\n| head | runs | accuracy | macro F1 |\n|---|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {len(v)} | {np.mean([a for a, _ in v]):.3f} | {np.mean([b for _, b in v]):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
