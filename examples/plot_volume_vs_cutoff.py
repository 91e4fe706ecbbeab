"""
Log-volume of the basin for several cutoffs
===========================================

Estimates the log10 volume of the training-loss basin of a clean and a
poisoned swiss-roll network for several loss cutoffs, from the same 1,000
random directions, with 95 % confidence intervals. The poisoned
basin is smaller by thousands of orders of magnitude.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.metrics import log_loss

from flatgen import PoisonedMLPClassifier, SpiralSampler, VolumeEstimator, make_spirals
from flatgen.plotting import OKABE_ITO

RANDOM_STATE = 0
CUTOFFS = [0.1, 0.2, 0.5, 1.0, 2.0]

X, y = make_spirals(200, noise=0.5, random_state=RANDOM_STATE)
clean = PoisonedMLPClassifier(
    max_iter=10000, poison_source=SpiralSampler(0.5), random_state=RANDOM_STATE
).fit(X, y)
poisoned = clone(clean).set_params(poison_factor=1.0).fit(X, y)

# %%
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for model, name, color in (
    (clean, "clean", OKABE_ITO[0]),
    (poisoned, "poisoned", OKABE_ITO[3]),
):
    # Only cutoffs above the loss at the minimum delimit a basin.
    loss0 = log_loss(y, model.predict_proba(X))
    cutoffs = [c for c in CUTOFFS if c > 1.5 * loss0]
    volume = VolumeEstimator(
        n_directions=1000, cutoff=cutoffs, random_state=RANDOM_STATE
    )
    volume.fit(model, X, y)
    errors = np.abs(volume.log10_volume_ci_.T - volume.log10_volume_)
    ax.errorbar(
        cutoffs,
        volume.log10_volume_,
        yerr=errors,
        marker="o",
        color=color,
        capsize=3,
        label=name,
    )
    print(name, {c: round(float(v), 1) for c, v in zip(cutoffs, volume.log10_volume_)})
ax.set_xscale("log")
ax.set_xlabel("loss cutoff (training cross-entropy)")
ax.set_ylabel("log$_{10}$ basin volume")
ax.legend()
plt.show()
