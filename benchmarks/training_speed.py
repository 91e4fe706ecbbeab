"""Training speed: the estimator vs a plain PyTorch loop, side by side.

Same network (the paper's 2-17-18-32-32-31-9-2 MLP), same 200 swiss-roll
points, same number of full-batch steps, same objective (cross-entropy plus
the poison term on 400 fresh jitter points per step, the defaults), SGD with momentum,
cosine schedule and gradient clipping, one torch thread each. Prints seconds
per step for both and their ratio (target: estimator / plain <= 1.3).

    python benchmarks/training_speed.py [--steps 4000] [--repeats 3]
"""

import argparse
import math
import time

import torch

from flatgen import PoisonedMLPClassifier, make_spirals
from flatgen.networks import MLP
from flatgen.poison import poison_loss


def plain_loop(X, y, steps, poison_factor, seed=0):
    torch.manual_seed(seed)
    module = MLP(2, 2)
    optimizer = torch.optim.SGD(
        module.parameters(), lr=0.01, momentum=0.9, foreach=True
    )
    generator = torch.Generator().manual_seed(seed)
    sigma = 0.15 * X.std(dim=0, unbiased=False)
    for step in range(steps):
        lr = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * step / (steps - 1)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        if poison_factor > 0:
            idx = torch.randint(len(X), (2 * len(X),), generator=generator)
            X_p = X[idx] + sigma * torch.randn(
                idx.shape + X.shape[1:], generator=generator
            )
            logits = module(torch.cat([X, X_p]))
            loss = torch.nn.functional.cross_entropy(logits[: len(X)], y)
            loss = loss + poison_factor * poison_loss(
                logits[len(X) :], y[idx], 1 - y[idx], "reverse"
            )
        else:
            loss = torch.nn.functional.cross_entropy(module(X), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 8.0, foreach=True)
        optimizer.step()
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, y = make_spirals(200, noise=0.5, random_state=0)
    X_t = torch.as_tensor(X, dtype=torch.float32)
    y_t = torch.as_tensor(y)
    torch.set_num_threads(1)
    print(
        f"{args.steps} full-batch steps on 200 points, 1 thread, best of {args.repeats}"
    )
    for beta in (0.0, 1.0):
        plain, estimator = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            plain_loop(X_t, y_t, args.steps, beta)
            plain.append(time.perf_counter() - start)
            clf = PoisonedMLPClassifier(
                poison_factor=beta,
                max_iter=args.steps,
                max_polish_iter=0,
                random_state=0,
            )
            start = time.perf_counter()
            clf.fit(X, y)
            estimator.append(time.perf_counter() - start)
        p, e = min(plain), min(estimator)
        print(
            f"poison_factor={beta:g}: plain {1e3 * p / args.steps:.3f} ms/step, "
            f"estimator {1e3 * e / args.steps:.3f} ms/step, ratio {e / p:.2f}x"
        )


if __name__ == "__main__":
    main()
