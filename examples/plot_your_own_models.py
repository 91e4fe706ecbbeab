"""
Your own models: a skorch net and an sklearn MLP next to an SVC
===============================================================

flatgen's analyzers measure any network classifier, not only flatgen's own:
here a skorch ``NeuralNetClassifier`` (a plain PyTorch module trained by
skorch with its default ``NLLLoss``) and scikit-learn's ``MLPClassifier``,
both fitted on the swiss roll, are measured by the same ``BasinAnalyzer``
and ``CurvatureAnalyzer`` (training-loss basin radius along
filter-normalized directions, top Hessian eigenvalue), and their decision
regions and input-space margins are drawn next to an RBF SVC's, which has
margins but no weights to perturb.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from skorch import NeuralNetClassifier
from torch import nn

from flatgen import BasinAnalyzer, CurvatureAnalyzer, MarginPlotter, make_spirals

RANDOM_STATE = 0

X, y = make_spirals(400, noise=0.5, random_state=RANDOM_STATE)
X = X.astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=200, random_state=RANDOM_STATE, stratify=y
)

# %%
# A PyTorch module of the user's own, trained by skorch: the module ends in a
# softmax, as skorch's default NLLLoss expects.
torch.manual_seed(RANDOM_STATE)
module = nn.Sequential(
    nn.Linear(2, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 2),
    nn.Softmax(dim=-1),
)
skorch_net = NeuralNetClassifier(
    module,
    optimizer=torch.optim.Adam,
    lr=3e-3,
    max_epochs=1500,
    batch_size=-1,  # full batch
    train_split=None,
    verbose=0,
).fit(X_train, y_train)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    sklearn_mlp = MLPClassifier(
        (64, 64, 64), max_iter=3000, tol=0, random_state=RANDOM_STATE
    ).fit(X_train, y_train)
svc = SVC(C=10, gamma=0.1).fit(X_train, y_train)

# %%
# The same analyzers, given each model as it is. skorch nets take class
# indices as labels; sklearn's MLP takes its own ``classes_``.
models = {"skorch net": skorch_net, "sklearn MLP": sklearn_mlp, "SVC (rbf)": svc}
flatness = {}
for name in ("skorch net", "sklearn MLP"):
    basin = BasinAnalyzer(n_directions=200, cutoff=0.5, random_state=RANDOM_STATE)
    basin.fit(models[name], X_train, y_train)
    curvature = CurvatureAnalyzer(random_state=RANDOM_STATE)
    curvature.fit(models[name], X_train, y_train)
    flatness[name] = (basin.mean_radius_, curvature.top_eigenvalue_)
    print(
        f"{name:<12} training loss {basin.base_loss_:.3g}, mean basin radius "
        f"{basin.mean_radius_:.3g}, top Hessian eigenvalue "
        f"{curvature.top_eigenvalue_:.3g}"
    )

# %%
# Decision regions and margins of all three; the networks' titles carry their
# flatness numbers.
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), layout="constrained")
for ax, (name, model) in zip(axes, models.items()):
    plotter = MarginPlotter(random_state=RANDOM_STATE).fit(
        model, X_train, y_train, X_test=X_test, y_test=y_test
    )
    plotter.plot(ax=ax, legend=ax is axes[0])
    title = (
        f"{name}: train {model.score(X_train, y_train):.0%}, "
        f"test {model.score(X_test, y_test):.0%}\n"
        f"median margin {plotter.median_margin_:.2f}"
    )
    if name in flatness:
        radius, eigenvalue = flatness[name]
        title += f", basin radius {radius:.3g}, curvature {eigenvalue:.3g}"
    ax.set_title(title)

if __name__ == "__main__":
    from pathlib import Path

    Path("results").mkdir(exist_ok=True)
    fig.savefig("results/your_own_models.png", dpi=150)
plt.show()
