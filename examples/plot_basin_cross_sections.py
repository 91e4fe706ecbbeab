"""
Basin cross-sections of clean and poisoned minima
=================================================

Trains the swiss-roll network with and without poisoning and draws the
training loss along 20 random filter-normalized directions from each minimum,
with the cutoff (cross-entropy 1.0, above the poisoned minimum's loss) and the
basin radius of each direction.
The poisoned minimum is sharp: its loss rises to the cutoff much sooner.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.base import clone

from flatgen import BasinAnalyzer, PoisonedMLPClassifier, SpiralSampler, make_spirals
from flatgen.plotting import OKABE_ITO, BasinDisplay

RANDOM_STATE = 0

X, y = make_spirals(200, noise=0.5, random_state=RANDOM_STATE)
# A shorter schedule with a sampler of the true distribution keeps this
# example to seconds; the default jitter source needs the full schedule.
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
    basin = BasinAnalyzer(n_directions=500, cutoff=1.0, random_state=RANDOM_STATE)
    basin.fit(model, X, y)
    label = f"{name}: mean radius {basin.mean_radius_:.3f}"
    BasinDisplay.from_analyzer(basin, label=label).plot(ax=ax, color=color)
    print(label)
ax.set_title("Training loss along random directions")
plt.show()
