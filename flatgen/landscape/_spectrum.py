"""Curvature of a symmetric operator from its products: Lanczos and diagonals.

Both work on any batched product ``hvp(V)`` mapping a (B, n) tensor to the
(B, n) products ``V H`` (H symmetric), so they serve a network's Hessian and
an analytic test operator alike.
"""

import torch

__all__ = ["lanczos_extremes", "probe_diagonal"]


def lanczos_extremes(
    matvec, n, n_steps, generator, *, dtype=torch.float64, device=None
):
    """Ritz pairs of a symmetric operator after ``n_steps`` Lanczos steps.

    Full re-orthogonalization (twice, "twice is enough") keeps the basis
    orthonormal to rounding, so the Ritz vectors are orthonormal and no
    spurious copies of converged eigenvalues appear. The extreme Ritz values
    converge first; each pair comes with its residual norm
    ``||H u - theta u||``, which says whether it has converged.

    Parameters
    ----------
    matvec : callable
        Maps a tensor of shape (1, n) to its product with the operator.
    n : int
        Dimension.
    n_steps : int
        Number of Lanczos steps (products); at most ``n``.
    generator : torch.Generator
        CPU generator of the start vector.
    dtype : torch.dtype, default=torch.float64
        Working dtype.
    device : torch.device, default=None
        Device of the vectors.

    Returns
    -------
    values : torch.Tensor of shape (k,)
        Ritz values in ascending order (``k <= n_steps``; fewer when the
        Krylov space is exhausted early).
    vectors : torch.Tensor of shape (n, k)
        Orthonormal Ritz vectors.
    residuals : torch.Tensor of shape (k,)
        Residual norm of each pair.
    """
    n_steps = int(min(n_steps, n))
    basis = torch.zeros((n_steps, n), dtype=dtype, device=device)
    alphas, betas = [], []
    q = torch.randn(n, generator=generator, dtype=torch.float64).to(device, dtype)
    q = q / q.norm()
    beta = torch.zeros((), dtype=dtype, device=device)
    last_beta = 0.0
    for j in range(n_steps):
        basis[j] = q
        w = matvec(q[None])[0].to(dtype)
        alpha = torch.dot(q, w)
        w = w - alpha * q
        if j > 0:
            w = w - beta * basis[j - 1]
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        alphas.append(float(alpha))
        beta = w.norm()
        last_beta = float(beta)
        scale = max(abs(a) for a in alphas) or 1.0
        if last_beta <= 1e-10 * scale or j == n_steps - 1:
            break
        betas.append(last_beta)
        q = w / beta
        # Near a breakdown w is tiny and q inherits its rounding: re-project.
        q = q - basis[: j + 1].T @ (basis[: j + 1] @ q)
        q = q / q.norm()
    k = len(alphas)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[: k - 1], dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    values, small = torch.linalg.eigh(tridiagonal)
    vectors = basis[:k].T @ small.to(device, dtype)
    residuals = last_beta * small[-1].abs()
    return values.to(dtype), vectors, residuals.to(dtype)


def probe_diagonal(
    hvp, n, n_probes, generator, *, batch_size=32, dtype=torch.float64, device=None
):
    """Hutchinson-style estimate of an operator's diagonal, ``E[z * Hz]``.

    Rademacher probes ``z`` (entries +-1) give ``z_i (Hz)_i = H_ii + sum_{j != i}
    H_ij z_i z_j``: exact for a diagonal operator with a single probe, with
    noise from the off-diagonal entries otherwise (Bekas et al., 2007).

    Parameters
    ----------
    hvp : callable
        Maps a tensor of shape (B, n) to its products with the operator.
    n : int
        Dimension.
    n_probes : int
        Number of probe vectors.
    generator : torch.Generator
        CPU generator of the probes.
    batch_size : int, default=32
        Probes per call of ``hvp``.
    dtype : torch.dtype, default=torch.float64
        Working dtype.
    device : torch.device, default=None
        Device of the vectors.

    Returns
    -------
    diagonal : torch.Tensor of shape (n,)
        Estimated diagonal.
    """
    total = torch.zeros(n, dtype=dtype, device=device)
    done = 0
    while done < n_probes:
        size = min(batch_size, n_probes - done)
        signs = torch.randint(0, 2, (size, n), generator=generator)
        z = (2.0 * signs - 1.0).to(device, dtype)
        total += (z * hvp(z).to(dtype)).sum(0)
        done += size
    return total / max(n_probes, 1)
