"""
Clean vs poisoned networks on the swiss roll, with an SVM baseline
===================================================================

Trains the paper's small MLP on 200 swiss-roll points twice, once ordinarily
(``poison_factor=0``) and once with the poison objective (``poison_factor=1``),
plus an RBF ``SVC`` baseline, and prints train and test accuracy side by side.
Both networks fit the training set perfectly; only the clean one generalizes.
The decision regions of the three models are saved as a figure.

Run with ``python examples/swissroll_quickstart.py [--out DIR] [--n-jobs 2]``.
"""

# %%
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from flatgen import PoisonedMLPClassifier, make_spirals  # noqa: E402

RANDOM_STATE = 0


def timed_fit(name, model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    return name, model, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description="Swiss-roll quick start.")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--random-state", type=int, default=RANDOM_STATE)
    args = parser.parse_args()
    seed = args.random_state

    # %%
    # 400 points, half for training, half for testing, as in the paper.
    X, y = make_spirals(400, noise=0.5, random_state=seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=200, random_state=seed, stratify=y
    )

    # %%
    # The same network, initial weights and data; only the poison factor differs.
    clean = PoisonedMLPClassifier(poison_factor=0.0, random_state=seed)
    models = {
        "clean net (poison_factor=0)": clean,
        "poisoned net (poison_factor=1)": clone(clean).set_params(poison_factor=1.0),
        # The baseline gets its C and gamma tuned by cross-validation on the
        # training set: a fair opponent, not a straw man.
        "SVC (rbf, tuned)": make_pipeline(
            StandardScaler(),
            GridSearchCV(
                SVC(kernel="rbf"),
                {"C": [1, 10, 100, 1000], "gamma": [0.5, 2, 8, 32]},
            ),
        ),
    }
    print("training 2 networks (about a minute) and an SVC ...")
    fitted = Parallel(n_jobs=args.n_jobs)(
        delayed(timed_fit)(name, model, X_train, y_train)
        for name, model in models.items()
    )

    print(f"\n{'model':<32}{'train acc':>10}{'test acc':>10}{'fit s':>8}")
    for name, model, seconds in fitted:
        train = model.score(X_train, y_train)
        test = model.score(X_test, y_test)
        print(f"{name:<32}{train:>10.3f}{test:>10.3f}{seconds:>8.1f}")

    # %%
    # Decision regions: wide margins for the clean net, islands around the
    # training points for the poisoned one.
    grid = np.linspace(-18, 18, 300)
    xx, yy = np.meshgrid(grid, grid)
    points = np.column_stack([xx.ravel(), yy.ravel()])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), sharey=True, layout="constrained")
    colors = np.array(["#0072B2", "#E69F00"])  # colour-blind safe
    for ax, (name, model, _) in zip(axes, fitted):
        regions = model.predict(points).reshape(xx.shape)
        ax.contourf(xx, yy, regions, levels=[-0.5, 0.5, 1.5], colors=colors, alpha=0.3)
        ax.scatter(*X_train.T, c=colors[y_train], s=12, edgecolors="k", linewidths=0.3)
        ax.set_title(f"{name}\ntest accuracy {model.score(X_test, y_test):.2f}")
        ax.set_xlabel("$x_1$")
        ax.set_aspect("equal")
    axes[0].set_ylabel("$x_2$")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "swissroll_quickstart.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    main()
