"""
Sharpness of the minimum as the poison factor grows
===================================================

The top eigenvalue of the filter-normalized training-loss Hessian (the
paper's "curv") for swiss-roll networks trained with increasing poison
factors: the more poison, the sharper the minimum.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.base import clone

from flatgen import (
    CurvatureAnalyzer,
    PoisonedMLPClassifier,
    SpiralSampler,
    make_spirals,
)
from flatgen.plotting import OKABE_ITO

RANDOM_STATE = 0
FACTORS = [0.0, 0.3, 1.0]

X, y = make_spirals(200, noise=0.5, random_state=RANDOM_STATE)
base = PoisonedMLPClassifier(
    max_iter=10000, poison_source=SpiralSampler(0.5), random_state=RANDOM_STATE
)
curvatures = []
for beta in FACTORS:
    model = clone(base).set_params(poison_factor=beta).fit(X, y)
    curvature = CurvatureAnalyzer(random_state=RANDOM_STATE).fit(model, X, y)
    curvatures.append(curvature.top_eigenvalue_)
    print(f"poison_factor={beta:g}: top eigenvalue {curvature.top_eigenvalue_:.3g}")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.plot(FACTORS, curvatures, marker="o", color=OKABE_ITO[3])
ax.set_yscale("log")
ax.set_xlabel("poison factor")
ax.set_ylabel("top Hessian eigenvalue\n(filter-normalized)")
plt.show()
