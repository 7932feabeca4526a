"""The rules of each page's parameters: one set, used by the runbook up front and by the pages."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import pytest
import torch

from infcore.profiles import PROFILES, profile_parameters
from infcore.runbook import declared_parameters, notebook_sources
from infcore.validation import PAGES, ParameterError, check_page

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {s.stem: s for s in notebook_sources(ROOT)}


def _defaults(page: str) -> dict:
    return {k: ast.literal_eval(v) for k, v in declared_parameters(SOURCES[page]).items()}


@pytest.mark.parametrize("page", sorted(SOURCES))
def test_every_page_has_a_rule_for_each_of_its_parameters(page):
    assert page in PAGES, f"infcore.validation.PAGES has no rules for {page}"
    assert set(PAGES[page][0]) == set(_defaults(page))


@pytest.mark.parametrize("page", sorted(SOURCES))
def test_every_page_checks_its_parameters_in_its_first_code_cell(page):
    first = next(c.source for c in jupytext.read(SOURCES[page]).cells
                 if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    assert f'validation.check_page("{page}", globals())' in first


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("page", sorted(SOURCES))
def test_the_profiles_pass(page, profile):
    check_page(page, {**_defaults(page), **profile_parameters(profile, page)})


@pytest.mark.parametrize("page, values, match", [
    ("02_instability", {"seeds": [0, 1, 1]}, r"seeds must not repeat a value \(two identical runs"),
    ("02_instability", {"batch_sizes": [32, 32]}, "batch_sizes must not repeat a value"),
    ("02_instability", {"seeds": 3}, r"seeds must be a list of distinct integers >= 0 \(at least 2\); got 3"),
    ("02_instability", {"seeds": [0]}, "seeds must be a list"),
    ("02_instability", {"perturbations": []}, "perturbations must be a non-empty list"),
    ("02_instability", {"perturbations": ["dropout"]}, "perturbations must be"),
    ("02_instability", {"perturbations": ["batch_size"], "batch_sizes": [32]},
     "batch_sizes must hold at least two batch sizes"),
    ("02_instability", {"perturbations": ["batch_size"], "methods": ["tracin_ideal"]},
     "TracInIdeal trains with batch size 1"),
    ("02_instability", {"methods": ["grad_dot", "grad_dot"]}, "methods must not repeat"),
    ("02_instability", {"methods": ["tracin"]}, "methods must be a non-empty list"),
    ("02_instability", {"datasets": ["cifar"]}, "datasets must be a non-empty list"),
    ("02_instability", {"damping": -1}, "damping must be 'auto' or a finite number > 0; got -1"),
    ("02_instability", {"damping": "none"}, "damping must be 'auto'"),
    ("02_instability", {"lr": "1e-3"}, "lr must be a finite number > 0; got '1e-3'"),
    ("02_instability", {"lr": float("inf")}, "lr must be a finite number > 0"),
    ("02_instability", {"ideal_lr": 0}, "ideal_lr must be a finite number > 0"),
    ("02_instability", {"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
    ("02_instability", {"epochs": 0}, "epochs must be an integer >= 1"),
    ("02_instability", {"n_train": 7}, "n_train must be a positive even integer"),
    ("02_instability", {"n_train": 2000}, r"n_train/2 \+ n_test/2 must be at most 500"),
    ("02_instability", {"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N'"),
    ("02_instability", {"backend": "spark"}, "backend must be one of"),
    ("02_instability", {"backend": "dask"}, "backend 'dask' needs dask_scheduler"),
    ("02_instability", {"dask_scheduler": "tcp://h:8786"}, "dask_scheduler applies only to backend 'dask'"),
    ("02_instability", {"chunk_size": 0}, "chunk_size must be an integer >= 1"),
    ("02_instability", {"results_dir": 3}, "results_dir must be a folder path or None"),
    ("02_instability", {"profile": "fast"}, "profile must be one of"),
    ("04_expected_influence", {"n_models": 1}, "n_models must be an integer >= 2"),
    ("04_expected_influence", {"sizes": [2, 3]}, r"sizes must include 1 and lie in \[1, n_models=3\]"),
    ("04_expected_influence", {"sizes": [1, 5]}, "sizes must include 1"),
    ("05_poisoning", {"n_poison": 150}, r"n_poison must be at most 100 \(the source-class training"),
    ("05_poisoning", {"ideal_epochs": 0}, "ideal_epochs must be an integer >= 1"),
    ("03_rethinking", {"orders": [0, 0]}, "orders must not repeat a value"),
    ("03_rethinking", {"orders": [0, 1, 2]}, "orders must hold two order seeds"),
    ("03_rethinking", {"cnn_n_copies": 500}, "cnn_n_copies must be at most 200"),
    ("01_chairs", {"leave_out": 4}, r"leave_out must be at most 3"),
    ("01_chairs", {"chairs": [[1, 2], [3]]}, "chairs must be a list of at least 3"),
    ("06_paper_scale", {"results_path": None}, "results_path must be a folder path; got None"),
])
def test_bad_values_are_refused_with_the_page_and_the_parameter(page, values, match):
    with pytest.raises(ParameterError, match=f"^{page}: .*{match}"):
        check_page(page, {**_defaults(page), **values})


def test_one_perturbation_is_a_valid_run():
    check_page("02_instability", {**_defaults("02_instability"), "perturbations": ["ordering"]})


def test_cuda_without_a_gpu_is_refused_naming_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="device is 'cuda' but torch.cuda.is_available"):
        check_page("05_poisoning", {**_defaults("05_poisoning"), "device": "cuda"})
