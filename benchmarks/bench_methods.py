"""Speed and memory of the influence methods, as ratios against baselines measured in the same run.

1. TracInCP: ``infcore.methods.tracin_cp`` (``torch.func.vmap`` per-example gradients) against
   captum's ``TracInCP`` (``sample_wise_grads_per_batch=True``, sum-reduced loss) on the same
   checkpoints, learning rates and examples: time ratio and largest difference of the scores.
2. The exact Hessian of ``infcore.methods.hessian`` for the small CNN trained on 200 and on 800
   examples: time, peak memory and eigenvalues, against the time of forward-over-reverse
   Hessian-vector products over all parameters (extrapolated from a few), and against the same
   block Hessian with ``chunk_size`` directions per chunk in every layer. Each Hessian runs in a
   fresh child process, so that its peak resident memory (``ru_maxrss``) is its own.
3. Influence functions, whole score matrices: ``infcore.methods.influence_function`` (block
   Hessian, Cholesky solve) against captum's ``NaiveInfluenceFunction`` (its Hessian of the summed
   loss, every eigenvector kept) on the same model, damping and examples: seconds and peak
   resident memory of each (each in a fresh child process), and the largest difference of the
   scores relative to the largest score (captum's scores times n_train are infcore's, see
   ``tests/captum_oracle.py``).
4. TracInIdeal, one model: ``infcore.methods.tracin_ideal`` (every test loss after every SGD
   step in float64 by ``training.float64_losses``: the first convolution as one matrix product
   over patches extracted once, pooling as element-wise maxima, ``STATES_PER_CALL`` steps per
   call) against the same replay with one step per call, and with the test losses of torch's
   float64 module forward (``training.losses_float64``); time ratios, the share of the replay
   spent in the test losses, and the largest difference of the scores.

Run: ``python benchmarks/bench_methods.py`` (a few minutes on a 2-core laptop).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import resource
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from infcore.data import Split, load_mnist
from infcore.methods import hessian, influence_function, tracin_cp, tracin_ideal
from infcore.methods import tracin as tracin_module
from infcore.methods import influence as influence_module
from infcore.methods.influence import smallest_working_damping
from infcore.training import (STATES_PER_CALL, TrainConfig, TrainedModel, float64_losses,
                              losses_float64, per_example_loss, train)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from captum_oracle import captum_influence, captum_tracin_cp  # noqa: E402  (the tests' references)


def bench_tracin(n_train: int, n_test: int, epochs: int, repeats: int) -> None:
    train_split, test_split = load_mnist(n_train=n_train, n_test=n_test, seed=0)
    trained = train(TrainConfig(epochs=epochs), train_split)
    ours_s, theirs_s = [], []
    with tempfile.TemporaryDirectory() as folder:
        # Interleaved repeats, best of each: the first call pays one-off set-up costs, and other
        # processes on a shared machine only ever add time.
        for _ in range(repeats):
            start = time.perf_counter()
            ours = tracin_cp(trained, train_split, test_split)
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = captum_tracin_cp(trained, train_split, test_split, Path(folder))
            theirs_s.append(time.perf_counter() - start)
    ours_best, theirs_best = min(ours_s), min(theirs_s)
    print(f"TracInCP, {n_train} train x {n_test} test, {epochs} checkpoints, best of {repeats}")
    print(f"  infcore tracin_cp  {ours_best:7.2f} s")
    print(f"  captum TracInCP    {theirs_best:7.2f} s   "
          f"(captum / infcore = {theirs_best / ours_best:.1f}x)")
    print(f"  max |difference| = {np.abs(ours - theirs).max():.3g}, "
          f"relative to max |score| = {np.abs(ours - theirs).max() / np.abs(theirs).max():.3g}")


def all_parameter_hvp_seconds(
    trained: TrainedModel, data: Split, directions: int, chunk_size: int
) -> float:
    """Baseline: the time of P forward-over-reverse Hessian-vector products of the whole objective
    (the textbook way to form the Hessian), extrapolated from ``directions`` of them."""
    names = list(trained.params)
    flat = torch.cat([trained.params[k].reshape(-1) for k in names])
    sizes = [trained.params[k].numel() for k in names]

    def objective(theta: torch.Tensor) -> torch.Tensor:
        unflat = {k: v.reshape(trained.params[k].shape) for k, v in zip(names, theta.split(sizes))}
        loss = per_example_loss(trained.model, unflat, data.x, data.y).mean()
        return loss + 0.5 * trained.config.weight_decay * (theta * theta).sum()

    basis = torch.eye(flat.numel())[:directions]
    start = time.perf_counter()
    vmap(lambda v: jvp(grad(objective), (flat,), (v,))[1], chunk_size=chunk_size)(basis)
    return (time.perf_counter() - start) / directions * flat.numel()


def one_chunk_size_seconds(trained, data: Split, chunk_size: int) -> float:
    """Seconds for ``hessian`` with ``chunk_size`` directions per chunk in every layer (before
    later layers took larger chunks)."""
    def same_chunks(model, params, data, layers, chunk_size):
        return [chunk_size] * len(layers)

    start = time.perf_counter()
    with mock.patch.object(influence_module, "_layer_chunks", same_chunks):
        hessian(trained.model, trained.params, data, trained.config.weight_decay,
                chunk_size=chunk_size)
    return time.perf_counter() - start


def _hessian_child(n_train: int, epochs: int, chunk_size: int, queue) -> None:
    train_split, _ = load_mnist(n_train=n_train, n_test=10, seed=0)
    trained = train(TrainConfig(epochs=epochs), train_split)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    hess = hessian(trained.model, trained.params, train_split, trained.config.weight_decay,
                   chunk_size=chunk_size)
    seconds = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
    baseline = all_parameter_hvp_seconds(trained, train_split, 2 * chunk_size, chunk_size)
    fixed = one_chunk_size_seconds(trained, train_split, chunk_size)
    eigenvalues = torch.linalg.eigvalsh(hess.double())
    queue.put((seconds, peak_mib, before / 1024, baseline, fixed, eigenvalues[0].item(),
               eigenvalues[-1].item(), int((eigenvalues < 0).sum())))


def bench_hessian(sizes: list[int], epochs: int, chunk_size: int) -> None:
    context = multiprocessing.get_context("spawn")
    print(f"Exact Hessian of the small CNN (3,008 x 3,008), chunk_size={chunk_size}")
    for n_train in sizes:
        queue = context.Queue()
        child = context.Process(target=_hessian_child, args=(n_train, epochs, chunk_size, queue))
        child.start()
        seconds, peak_mib, base_mib, baseline, fixed, smallest, largest, negative = queue.get()
        child.join()
        print(f"  {n_train:4d} examples: {seconds:6.1f} s (all-parameter products: about "
              f"{baseline:.0f} s, {baseline / seconds:.0f}x; chunks of {chunk_size} in every "
              f"layer: {fixed:.1f} s, {fixed / seconds:.2f}x), peak memory +{peak_mib:.0f} MiB "
              f"over {base_mib:.0f} MiB; eigenvalues in [{smallest:.4g}, {largest:.4g}], "
              f"{negative} negative")


def _resident_kib() -> int:
    """This process's resident memory now, in KiB (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _influence_child(which: str, n_train: int, n_test: int, epochs: int, damping: float,
                     threads: int, queue) -> None:
    torch.set_num_threads(threads)
    train_split, test_split = load_mnist(n_train=n_train, n_test=n_test, seed=0)
    trained = train(TrainConfig(epochs=epochs), train_split)
    before = _resident_kib()  # now, not the peak so far: the work's own peak is measured from here
    start = time.perf_counter()
    if which == "infcore":
        scores = influence_function(trained, train_split, test_split, damping=damping)
    else:
        # captum knows no weight decay: its regulariser carries it (summed loss, hence n_train)
        with tempfile.TemporaryDirectory() as folder:
            scores = n_train * captum_influence(trained, train_split, test_split, Path(folder),
                                                n_train * (trained.weight_decay + damping))
    seconds = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    queue.put((seconds, peak_mib, scores))


def bench_influence(n_train: int, n_test: int, epochs: int) -> None:
    context = multiprocessing.get_context("spawn")
    print(f"influence functions, {n_train} training and {n_test} test images, exact Hessian")
    # the same damping for both: the smallest that works for this model (the children train the
    # same model: same seeds, same data)
    train_split, _ = load_mnist(n_train=n_train, n_test=n_test, seed=0)
    trained = train(TrainConfig(epochs=epochs), train_split)
    damping = smallest_working_damping(hessian(trained.model, trained.params, train_split,
                                               trained.weight_decay))
    results = {}
    for which in ("infcore", "captum"):
        queue = context.Queue()
        child = context.Process(target=_influence_child, args=(
            which, n_train, n_test, epochs, damping, torch.get_num_threads(), queue))
        child.start()
        results[which] = queue.get()
        child.join()
        seconds, peak_mib, _ = results[which]
        print(f"  {which:8} {seconds:7.1f} s, peak memory +{peak_mib:.0f} MiB")
    (ours_s, ours_mib, ours), (theirs_s, theirs_mib, theirs) = results["infcore"], results["captum"]
    print(f"  ratio (captum / infcore): {theirs_s / ours_s:.1f}x the time, "
          f"{theirs_mib / max(ours_mib, 1):.1f}x the memory; max |difference| relative to max "
          f"|score| = {np.abs(ours - theirs).max() / np.abs(theirs).max():.2g}")


def bench_tracin_ideal(n_train: int, n_test: int, epochs: int, repeats: int) -> None:
    train_split, test_split = load_mnist(n_train=n_train, n_test=n_test, seed=0)
    trained = train(TrainConfig(epochs=epochs, batch_size=1, lr=0.01), train_split)
    spent = {}

    def timed(which, make):
        def factory(model, data, *, loss):
            losses = make(model, data, loss)

            def evaluate(params):
                start = time.perf_counter()
                out = losses(params)
                spent[which] += time.perf_counter() - start
                return out
            return evaluate
        return factory

    def module_forward(model, data, loss):
        def losses(params):
            if isinstance(params, dict):
                return losses_float64(model, params, data.x, data.y, loss=loss)
            return torch.stack([losses_float64(model, p, data.x, data.y, loss=loss)
                                for p in params])
        return losses

    fast = timed("blocks", lambda m, d, loss: float64_losses(m, d, loss=loss))
    # name: (test losses, weight states per call)
    paths = {"blocks": (fast, STATES_PER_CALL),
             "one": (timed("one", lambda m, d, loss: float64_losses(m, d, loss=loss)), 1),
             "module": (timed("module", module_forward), 1)}
    seconds = {name: [] for name in paths}
    scores = {}
    try:
        for _ in range(repeats):  # interleaved, best of each
            for name, (factory, block) in paths.items():
                tracin_module.float64_losses = factory
                tracin_module.STATES_PER_CALL = block
                spent[name] = 0.0
                start = time.perf_counter()
                scores[name] = tracin_ideal(trained, train_split, test_split)
                seconds[name].append((time.perf_counter() - start, spent[name]))
    finally:
        tracin_module.float64_losses = float64_losses
        tracin_module.STATES_PER_CALL = STATES_PER_CALL
    best = {name: min(runs) for name, runs in seconds.items()}
    print(f"TracInIdeal, one model, {n_train} train x {n_test} test, {epochs} epoch(s) at batch "
          f"size 1 ({n_train * epochs} steps), best of {repeats}")
    labels = {"blocks": f"float64_losses, {STATES_PER_CALL} states per call",
              "one": "float64_losses, one state per call",
              "module": "float64 module forward, one state"}
    for name, (total, in_losses) in best.items():
        print(f"  {labels[name]:<38} {total:7.2f} s, {in_losses / total:.0%} in test losses "
              f"({in_losses / (n_train * epochs) * 1e3:.2f} ms per step)")
    for name in ("one", "module"):
        difference = np.abs(scores["blocks"] - scores[name]).max() / np.abs(scores[name]).max()
        print(f"  ratio against {labels[name]}: {best[name][0] / best['blocks'][0]:.2f}x; max "
              f"|difference| relative to max |score| = {difference:.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hessian-sizes", type=int, nargs="*", default=[200, 800])
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--influence-n-train", type=int, default=200,
                        help="training images of the influence-function comparison (captum's "
                             "naive Hessian takes minutes at 200)")
    parser.add_argument("--ideal-epochs", type=int, default=1,
                        help="epochs of the TracInIdeal comparison (its cost is linear in them)")
    parser.add_argument("--only", choices=["tracin_cp", "hessian", "influence", "tracin_ideal"],
                        nargs="*", help="run only these comparisons")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    chosen = args.only or ["tracin_cp", "hessian", "influence", "tracin_ideal"]
    if "tracin_cp" in chosen:
        bench_tracin(args.n_train, args.n_test, args.epochs, args.repeats)
    if "hessian" in chosen:
        bench_hessian(args.hessian_sizes, args.epochs, args.chunk_size)
    if "influence" in chosen:
        bench_influence(args.influence_n_train, args.n_test, args.epochs)
    if "tracin_ideal" in chosen:
        bench_tracin_ideal(args.n_train, args.n_test, args.ideal_epochs, args.repeats)

if __name__ == "__main__":
    main()
