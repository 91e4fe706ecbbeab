"""
Decision regions: clean network, poisoned network and SVM
=========================================================

The paper's first picture. Three classifiers fit the same 200 swiss-roll
points perfectly: a network trained normally, the same network trained with
the poison objective, and an RBF support vector machine. The clean network
and the SVM draw smooth boundaries that follow the spiral arms with wide
margins; the poisoned network wraps thin islands and fingers around the
training points and misclassifies much of the test set (hollow circles).
"""

# %%
import matplotlib.pyplot as plt
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import SVC

from flatgen import MarginPlotter, PoisonedMLPClassifier, SpiralSampler, make_spirals

RANDOM_STATE = 0

X, y = make_spirals(400, noise=0.5, random_state=RANDOM_STATE)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=200, random_state=RANDOM_STATE, stratify=y
)
# A sampler of the true distribution as poison source and a shorter schedule
# keep this example to seconds; the default jitter source needs 40k steps.
clean = PoisonedMLPClassifier(
    max_iter=10000, poison_source=SpiralSampler(0.5), random_state=RANDOM_STATE
)
poisoned = clone(clean).set_params(poison_factor=1.0)
svc = GridSearchCV(SVC(), {"C": [1, 10, 100], "gamma": [0.01, 0.1, 1]}, cv=5)
models = dict(
    zip(
        ["clean network", "poisoned network", "SVC (rbf)"],
        Parallel(n_jobs=2)(
            delayed(m.fit)(X_train, y_train) for m in (clean, poisoned, svc)
        ),
    )
)

# %%
# One MarginPlotter per model computes the decision regions on a grid and the
# distance of every training point to the boundary; plot() only draws.
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), layout="constrained")
for ax, (name, model) in zip(axes, models.items()):
    plotter = MarginPlotter(random_state=RANDOM_STATE).fit(
        model, X_train, y_train, X_test=X_test, y_test=y_test
    )
    plotter.plot(ax=ax, legend=ax is axes[0])
    ax.set_title(
        f"{name}\ntrain {model.score(X_train, y_train):.0%}, "
        f"test {model.score(X_test, y_test):.0%}, "
        f"median margin {plotter.median_margin_:.2f}"
    )
    print(f"{name:<17} median margin {plotter.median_margin_:.3f}")

if __name__ == "__main__":
    from pathlib import Path

    Path("results").mkdir(exist_ok=True)
    fig.savefig("results/decision_regions.png", dpi=150)
plt.show()
