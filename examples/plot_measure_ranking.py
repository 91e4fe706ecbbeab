"""
Which measure predicts the generalization gap?
==============================================

Six swiss-roll networks, trained with three poison factors and two seeds,
all fitting their training set; each minimum measured by curvature,
sharpness (at a radius set by hand, and at the one where each model's loss
rises by 0.1), PAC-Bayes flatness and norms; the measures ranked by Kendall's
tau with the generalization gap (``flatgen study`` does the same over a
larger grid, with bootstrap intervals and per-axis taus).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from flatgen import (
    CurvatureAnalyzer,
    MeasureRankingDisplay,
    NormAnalyzer,
    PACBayesAnalyzer,
    PoisonedMLPClassifier,
    SharpnessAnalyzer,
    WorstCaseFlatnessAnalyzer,
    make_spirals,
)
from flatgen.experiments import rank_measures

X, y = make_spirals(200, noise=0.5, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=100, random_state=0
)
base = PoisonedMLPClassifier(
    (16, 16, 16), solver="adam", learning_rate_init=0.01, max_iter=1500
)
measures = {
    "top eigenvalue": CurvatureAnalyzer(n_iter=50, n_probes=0, random_state=0),
    "adaptive sharpness": SharpnessAnalyzer(radius=0.1, n_steps=10, random_state=0),
    "adaptive worst-case flatness": WorstCaseFlatnessAnalyzer(
        scale="adaptive", n_steps=10, rtol=0.01, random_state=0
    ),
    "PAC-Bayes flatness": PACBayesAnalyzer(n_draws=32, random_state=0),
    "Fisher-Rao norm": NormAnalyzer("fisher_rao"),
    "log10 spectral product": NormAnalyzer("log10_spectral_product"),
}
values = {name: [] for name in measures}
gaps, params = [], []
for beta in (0.0, 0.1, 0.3):
    for seed in (0, 1):
        model = clone(base).set_params(poison_factor=beta, random_state=seed)
        model.fit(X_train, y_train)
        gaps.append(model.score(X_train, y_train) - model.score(X_test, y_test))
        params.append({"poison_factor": beta, "seed": seed})
        for name, analyzer in measures.items():
            # A scorer reads "larger is flatter"; the ranking takes each
            # measure the other way round, larger meaning sharper (the
            # direction in which it should predict a larger gap).
            values[name].append(-analyzer(model, X_train, y_train))

ranking = rank_measures(values, np.array(gaps), params, n_bootstrap=200)
for row in ranking:
    print(f"{row['measure']:<30} tau {row['tau']:.2f}")

# %%
MeasureRankingDisplay.from_rows(ranking).plot()
plt.show()
