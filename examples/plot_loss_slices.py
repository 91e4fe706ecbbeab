"""
Loss slices through clean and poisoned minima
=============================================

Trains the swiss-roll network with and without poisoning and draws the
training loss on slices through each minimum along the same random
filter-normalized directions: a line (left) and a plane (middle, right), all
on one linear scale. The clean minimum lies in a wide valley with a flat
floor; the poisoned one is a narrow V-shaped well whose loss rises as soon as
the weights move (its floor is not at zero: the poison term pulls against
the training loss).
"""

# %%
import matplotlib.pyplot as plt
from sklearn.base import clone

from flatgen import LossSlice, PoisonedMLPClassifier, SpiralSampler, make_spirals
from flatgen.plotting import OKABE_ITO

RANDOM_STATE = 0
SPAN = 0.4  # slices run from -0.2 to 0.2 filter-normalized units

X, y = make_spirals(200, noise=0.5, random_state=RANDOM_STATE)
# A shorter schedule with a sampler of the true distribution keeps this
# example to seconds; the default jitter source needs the full schedule.
clean = PoisonedMLPClassifier(
    max_iter=10000, poison_source=SpiralSampler(0.5), random_state=RANDOM_STATE
).fit(X, y)
poisoned = clone(clean).set_params(poison_factor=1.0).fit(X, y)
models = {"clean": clean, "poisoned": poisoned}

# %%
# Slices of both minima along the same seeded directions.
line_slice = LossSlice(
    n_dims=1, span=SPAN, grid_resolution=81, random_state=RANDOM_STATE
)
plane_slice = LossSlice(
    n_dims=2, span=SPAN, grid_resolution=61, random_state=RANDOM_STATE
)
lines = {name: clone(line_slice).fit(model, X, y) for name, model in models.items()}
planes = {name: clone(plane_slice).fit(model, X, y) for name, model in models.items()}
for name, plane in planes.items():
    print(
        f"{name}: loss at the minimum {plane.base_loss_:.3g}, "
        f"largest on the plane {plane.losses_.max():.3g}"
    )

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
for (name, line), color in zip(lines.items(), (OKABE_ITO[0], OKABE_ITO[3])):
    line.plot(ax=axes[0], color=color, log_scale=False).line_.set_label(name)
axes[0].legend(title="minimum")
axes[0].set_title("1-D slice")
high = max(plane.losses_.max() for plane in planes.values())
for ax, (name, plane) in zip(axes[1:], planes.items()):
    disp = plane.plot(ax=ax, log_scale=False, loss_range=(0, high))
    disp.ax_.set_title(f"2-D slice, {name}")

if __name__ == "__main__":
    from pathlib import Path

    Path("results").mkdir(exist_ok=True)
    fig.savefig("results/loss_slices.png", dpi=150)
plt.show()
