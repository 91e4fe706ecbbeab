"""
Margins in input space: clean net, poisoned net and SVM on one scale
====================================================================

Every training point's distance to the decision boundary, for a normally
trained network, the same network trained with the poison objective, and an
RBF SVM. All three classify every training point correctly; the poisoned
network does so with boundaries that pass close to the points, so its
margins are several times smaller. The box plot (left) shows every point
and the median; the cumulative distributions (right) compare whole
distributions.
"""

# %%
import matplotlib.pyplot as plt
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from flatgen import (
    MarginDistributionDisplay,
    MarginPlotter,
    PoisonedMLPClassifier,
    SpiralSampler,
    make_spirals,
)

RANDOM_STATE = 0

X, y = make_spirals(200, noise=0.5, random_state=RANDOM_STATE)
clean = PoisonedMLPClassifier(
    max_iter=10000, poison_source=SpiralSampler(0.5), random_state=RANDOM_STATE
)
poisoned = clone(clean).set_params(poison_factor=1.0)
svc = GridSearchCV(SVC(), {"C": [1, 10, 100], "gamma": [0.01, 0.1, 1]}, cv=5)
models = Parallel(n_jobs=2)(delayed(m.fit)(X, y) for m in (clean, poisoned, svc))

# %%
# Margins of every model; the plotter works with any classifier.
plotters = [
    MarginPlotter(random_state=RANDOM_STATE).fit(model, X, y) for model in models
]
display = MarginDistributionDisplay.from_plotters(
    plotters, ["clean net", "poisoned net", "SVC (rbf)"]
)
for name, median in zip(display.labels, display.medians_):
    print(f"{name:<13} median margin {median:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
display.plot(ax=axes[0])
display.plot(ax=axes[1], kind="ecdf")
axes[0].set_title("margins of the 200 training points")
axes[1].set_title("cumulative distribution")

if __name__ == "__main__":
    from pathlib import Path

    Path("results").mkdir(exist_ok=True)
    fig.savefig("results/margin_distributions.png", dpi=150)
plt.show()
