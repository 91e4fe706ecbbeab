"""Small torch helpers shared by estimators and analyzers."""

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n_threads):
    """Run the block with torch's intra-op thread count set to ``n_threads``.

    Results are bit-for-bit reproducible only at a fixed thread count, and a
    fixed count keeps parallel fits (joblib workers) from oversubscribing the
    cores. ``None`` leaves torch's setting alone.
    """
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(device):
    """Return ``device`` as a :class:`torch.device`, checking it is usable.

    Raises
    ------
    ValueError
        If the string names no torch device, or names CUDA where CUDA is
        not available.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu' or 'cuda'."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='cpu'."
        )
    return resolved


@contextmanager
def seeded_torch(seed):
    """Seed torch's global CPU generator inside the block, then restore it.

    Module constructors draw their initial weights from the global generator;
    forking it keeps a fit from disturbing the user's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
