"""flatgen: see and measure why neural networks generalize.

Poisoned training of PyTorch networks as scikit-learn estimators, after
Huang et al., "Understanding Generalization through Visualizations" (2019).

The public names below are imported on first use, so ``import flatgen`` and
the ``flatgen`` command start in milliseconds and a Ctrl-C while they start
is handled like one later on, instead of interrupting a torch import.
"""

import importlib

__version__ = "0.1.0"

# Public name -> submodule that defines it.
_EXPORTS = {
    "AnnealedVolumeEstimator": "analyzers",
    "BatchedPoisonFitter": "estimators",
    "ArraySampler": "poison",
    "BasinAnalyzer": "analyzers",
    "BasinDisplay": "plotting",
    "CurvatureAnalyzer": "analyzers",
    "LearningCoefficientAnalyzer": "analyzers",
    "NormAnalyzer": "analyzers",
    "PACBayesAnalyzer": "analyzers",
    "RelativeFlatnessAnalyzer": "analyzers",
    "SharpnessAnalyzer": "analyzers",
    "DecisionRegionsDisplay": "plotting",
    "LossSlice": "analyzers",
    "LossSliceDisplay": "plotting",
    "MarginAnalyzer": "analyzers",
    "MarginDistributionDisplay": "plotting",
    "MeasureRankingDisplay": "plotting",
    "MarginPlotter": "analyzers",
    "PerturbationAnimation": "plotting",
    "PerturbationPath": "analyzers",
    "PoisonedCNNClassifier": "estimators",
    "PoisonedMLPClassifier": "estimators",
    "PoisonSweepDisplay": "plotting",
    "SpiralSampler": "datasets",
    "TrainingDivergedError": "exceptions",
    "VolumeConvergenceDisplay": "plotting",
    "VolumeEstimator": "analyzers",
    "VolumeGapDisplay": "plotting",
    "WorstCaseFlatnessAnalyzer": "analyzers",
    "make_spirals": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flatgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
