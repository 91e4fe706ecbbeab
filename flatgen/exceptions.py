"""Exceptions raised by flatgen."""

__all__ = ["TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss, so the fitted model would be broken.

    Raised instead of returning a model whose weights are NaN or infinite.
    Lowering the learning rate or the poison factor, or clipping gradients,
    usually helps.
    """
