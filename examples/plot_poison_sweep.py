"""
Generalization gap against the poison factor
============================================

The same network is trained on the same 200 swiss-roll points with poison
factors from 0 to 1. Every model reaches (nearly) perfect training accuracy,
yet test accuracy falls, and the generalization gap grows, as the poison
factor rises: minimizing the training loss alone does not make a model
generalize.
"""

# %%
import matplotlib.pyplot as plt
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split

from flatgen import (
    PoisonedMLPClassifier,
    PoisonSweepDisplay,
    SpiralSampler,
    make_spirals,
)

RANDOM_STATE = 0
POISON_FACTORS = [0.0, 0.03, 0.1, 0.3, 1.0]

X, y = make_spirals(400, noise=0.5, random_state=RANDOM_STATE)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=200, random_state=RANDOM_STATE, stratify=y
)
models = [
    PoisonedMLPClassifier(
        poison_factor=beta,
        max_iter=8000,
        poison_source=SpiralSampler(0.5),
        random_state=RANDOM_STATE,
    )
    for beta in POISON_FACTORS
]
models = Parallel(n_jobs=2)(delayed(m.fit)(X_train, y_train) for m in models)

# %%
# Models sharing a poison factor (e.g. several seeds) would be averaged, with
# bands showing their spread. With a
# ``GridSearchCV(..., return_train_score=True)`` over ``poison_factor``,
# ``PoisonSweepDisplay.from_cv_results(search.cv_results_)`` draws the same
# figure from cross-validation.
display = PoisonSweepDisplay.from_estimators(models, X_train, y_train, X_test, y_test)
for beta, train, test in zip(POISON_FACTORS, display.train_scores, display.test_scores):
    print(f"poison factor {beta:<5g} train {train:.3f} test {test:.3f}")
fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
display.plot(ax=ax)
ax.set_title("swiss roll, 200 training points")

if __name__ == "__main__":
    from pathlib import Path

    Path("results").mkdir(exist_ok=True)
    fig.savefig("results/poison_sweep.png", dpi=150)
plt.show()
