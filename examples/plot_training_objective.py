"""
A plain PyTorch regressor, its own loss and a DataLoader
========================================================

Every analyzer measures one object, :class:`flatgen.landscape.TrainingObjective`:
a model's mean training loss as a function of its weights. Here it is built
by hand for a small PyTorch regressor trained by an ordinary loop under
``nn.MSELoss``, with the training set given as a ``DataLoader`` (every
measurement then sums over the batches: the full-data loss, one batch in
memory at a time). The same objective goes to ``LossSlice`` and
``BasinAnalyzer`` in place of a model, and its Hessian to scipy's ``eigsh``.
Two networks are measured side by side: one fitted to ``sin(x)`` plus noise,
one trained on the same inputs with shuffled targets, which it cannot fit
(its training error stays about 50 times higher). Radii are taken where each
network's own training error doubles, a cutoff relative to its minimum.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from flatgen import BasinAnalyzer, LossSlice, LossSliceDisplay
from flatgen.landscape import TrainingObjective

RANDOM_STATE = 0
rng = np.random.RandomState(RANDOM_STATE)
X = torch.as_tensor(rng.uniform(-3, 3, (256, 1)), dtype=torch.float32)
y = torch.sin(X) + 0.1 * torch.as_tensor(rng.standard_normal((256, 1)))
y = y.float()


def trained(targets, seed):
    """A 1-32-32-1 tanh network fitted by Adam to ``targets``."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(2000):
        optimizer.zero_grad()
        nn.functional.mse_loss(net(X), targets).backward()
        optimizer.step()
    return net.eval()


shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
networks = {
    "fits sin(x)": (trained(y, 0), y),
    "fits shuffled targets": (
        trained(shuffled, 0),
        shuffled,
    ),
}

# %%
# One objective per network: the module, its training data as batches of 64,
# and its own criterion. Any analyzer takes it in place of a model.
slices, radii = {}, {}
for name, (net, targets) in networks.items():
    loader = DataLoader(TensorDataset(X, targets), batch_size=64)
    objective = TrainingObjective(net, loader, criterion=nn.MSELoss())
    slices[name] = LossSlice(span=1.0, grid_resolution=41, random_state=0).fit(
        objective, None, None
    )
    basin = BasinAnalyzer(
        n_directions=100, cutoff=2.0, cutoff_type="relative", random_state=0
    )
    radii[name] = basin.fit(objective, None, None).radii_
    top = eigsh(objective.as_linear_operator(), k=1, which="LA")[0][0]
    print(
        f"{name}: training MSE {objective.base_loss()[0]:.4f}, mean radius at "
        f"twice it {radii[name].mean():.3f}, top Hessian eigenvalue {top:.3g}"
    )

# %%
# The loss along one filter-normalized direction through each minimum, and
# the radii at which each loss doubles, along 100 such directions.
colors = dict(zip(networks, ["#0072B2", "#D55E00"]))  # Okabe-Ito
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for name, slice_ in slices.items():
    LossSliceDisplay.from_analyzer(slice_, label=name).plot(ax=left, color=colors[name])
left.set_ylabel("training MSE")
left.legend(loc="lower right")
left.set_title("Training MSE along a random direction")
right.hist(
    list(radii.values()), bins=20, label=list(radii), color=list(colors.values())
)
right.set_xlabel("radius where the training MSE doubles")
right.set_ylabel("directions")
right.legend()
right.set_title("Basin radii, 100 directions")
plt.show()
