"""Baseline models the networks are compared with."""

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ._spec import Model


def svc_baseline(settings, seeds, data, *, flat_inputs=False):
    """RBF SVC on standardized inputs, ``C`` and ``gamma`` tuned by stratified CV.

    A tuned baseline is a fair opponent: the networks get no tuning either
    way, but an untuned SVC would understate what a kernel method does. Five
    folds, or fewer when the smallest class has fewer members (tiny subsets);
    the first grid values without tuning when it has only one.

    Parameters
    ----------
    settings : dict
        The run's settings; ``svc_grid`` maps ``C`` and ``gamma`` to the
        values tried.
    seeds : dict
        The run's seeds; ``svc`` shuffles the folds.
    data : ExperimentData
        The run's data (the fold count depends on the class sizes).
    flat_inputs : bool, default=False
        Whether samples are images the SVC sees as rows of pixels.

    Returns
    -------
    model : Model
        Unfitted, named ``'SVC (rbf)'``.
    """
    grid, seed = settings["svc_grid"], seeds["svc"]
    y = data.y_train
    n_folds = min(5, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    key = {"svc_grid": grid, "seed": seed, "n_folds": n_folds}
    if n_folds < 2:
        first = {name: values[0] for name, values in grid.items()}
        estimator = make_pipeline(StandardScaler(), SVC(kernel="rbf", **first))
    else:
        folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        search = GridSearchCV(SVC(kernel="rbf"), grid, cv=folds)
        estimator = make_pipeline(StandardScaler(), search)
    return Model(
        name="SVC (rbf)",
        estimator=estimator,
        settings=key,
        title="SVC (rbf, tuned)",
        flat_inputs=flat_inputs,
    )
