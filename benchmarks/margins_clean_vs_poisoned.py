"""Input-space margins on the swiss roll: clean net, poisoned net, RBF SVC.

For each data seed, fits the default PoisonedMLPClassifier with poison_factor
0 and 1 on 200 swiss-roll points and an RBF ``SVC`` tuned by cross-validated
grid search on the same points, then measures every training point's distance
to each model's decision boundary with MarginPlotter. Prints train/test
accuracy, median and quartiles of the margins, and the search cost; checks the
numerical search against a brute-force reference (2,048 rays, 300 scan steps
each, every crossing bisected) on the first 40 points of each model.

    python benchmarks/margins_clean_vs_poisoned.py [--seeds 0 1 2] [--n-jobs 2]
"""

import argparse
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import SVC

from flatgen import MarginPlotter, PoisonedMLPClassifier, make_spirals
from flatgen.analyzers._boundary_search import LabelOracle, _bisect


def split(seed):
    X, y = make_spirals(400, noise=0.5, random_state=seed)
    return train_test_split(X, y, train_size=200, random_state=seed, stratify=y)


def fit(seed, name):
    X_train, X_test, y_train, y_test = split(seed)
    if name == "SVC (rbf, tuned)":
        grid = {"C": [0.1, 1, 10, 100], "gamma": [0.01, 0.1, 1, 10]}
        model = GridSearchCV(SVC(), grid, cv=5).fit(X_train, y_train).best_estimator_
    else:
        beta = 0.0 if name.startswith("clean") else 1.0
        model = PoisonedMLPClassifier(poison_factor=beta, random_state=seed)
        model.fit(X_train, y_train)
    return seed, name, model


def brute_force_margins(model, points, max_distance, n_angles=2048, n_scan=300):
    """Closest label change over a dense fan of rays, bisected: a reference."""
    oracle = LabelOracle(model.predict, (2,), 1 << 16)
    labels = oracle(points)
    angles = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    rays = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    steps = np.geomspace(1e-5 * max_distance, max_distance, n_scan)
    out = np.full(len(points), max_distance)
    for i, p in enumerate(points):
        grid = p + steps[None, :, None] * rays[:, None, :]
        changed = oracle(grid.reshape(-1, 2)).reshape(n_angles, n_scan) != labels[i]
        first = np.argmax(changed, axis=1)
        high = np.where(changed.any(axis=1), steps[first], np.inf)
        low = np.where(first > 0, steps[np.maximum(first - 1, 0)], 0.0)
        # Every crossing ray is bisected: many rays share the closest scan
        # cell, and the nearest boundary point lies on only some of them.
        keep = np.flatnonzero(np.isfinite(high))
        if len(keep):
            found = _bisect(
                oracle,
                np.repeat(p[None], len(keep), 0),
                np.repeat(labels[i], len(keep)),
                rays[keep],
                low[keep],
                high[keep],
                30,
            )
            out[i] = found.min()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    names = ["clean net (beta=0)", "poisoned net (beta=1)", "SVC (rbf, tuned)"]
    jobs = [(s, n) for s in args.seeds for n in names]
    fits = Parallel(n_jobs=args.n_jobs)(delayed(fit)(s, n) for s, n in jobs)

    print(
        f"{'seed':>4} {'model':<22} {'train':>6} {'test':>6} {'median':>8} "
        f"{'q25':>8} {'q75':>8} {'s':>5} {'vs brute force (40 pts)':>26}"
    )
    medians = {}
    for seed, name, model in fits:
        X_train, X_test, y_train, y_test = split(seed)
        start = time.perf_counter()
        plotter = MarginPlotter(random_state=0).fit(model, X_train, y_train)
        seconds = time.perf_counter() - start
        reference = brute_force_margins(model, X_train[:40], plotter.max_distance_)
        ratio = plotter.margins_[:40] / reference - 1
        q25, q75 = np.quantile(plotter.margins_, [0.25, 0.75])
        medians[seed, name] = plotter.median_margin_
        print(
            f"{seed:>4} {name:<22} {model.score(X_train, y_train):>6.3f} "
            f"{model.score(X_test, y_test):>6.3f} {plotter.median_margin_:>8.4f} "
            f"{q25:>8.4f} {q75:>8.4f} {seconds:>5.1f} "
            f"{f'{ratio.min():+.1e} .. {ratio.max():+.1e}':>26}"
        )
    for seed in args.seeds:
        clean, poisoned = medians[seed, names[0]], medians[seed, names[1]]
        print(
            f"seed {seed}: median margin clean / poisoned = {clean / poisoned:.1f}x, "
            f"SVC / clean = {medians[seed, names[2]] / clean:.2f}x"
        )


if __name__ == "__main__":
    main()
