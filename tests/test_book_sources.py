"""The committed book agrees with its sources: same code cells, parameters cells that match the profile."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jupytext
import pytest

from infcore.profiles import PROFILES
from infcore.runbook import declared_parameters, notebook_sources, plan, run_name

ROOT = Path(__file__).resolve().parents[1]
SOURCES = notebook_sources(ROOT)


def _code_cells(cells) -> list[str]:
    return [
        ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).strip()
        for c in cells
        if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_executed_book_is_not_stale(source):
    executed = ROOT / "book" / f"{source.stem}.ipynb"
    assert executed.exists(), f"{executed} is missing: run `make book` and commit it"
    want = _code_cells(jupytext.read(source).cells)
    got = _code_cells(json.loads(executed.read_text())["cells"])
    assert got == want, f"{executed} is stale against {source}: run `make book` and commit it"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_parameters_cell_holds_the_quick_profile(source):
    declared = declared_parameters(source)
    assert declared, f"{source} has no cell tagged 'parameters'"
    for name, value in PROFILES["quick"].get(source.stem, {}).items():
        assert name in declared, f"the quick profile sets {name!r}, which {source.name} does not declare"
        assert ast.literal_eval(declared[name]) == value, (
            f"{source.name}: {name} = {declared[name]}, quick profile: {value!r}")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_parameter_is_declared(profile):
    for source in SOURCES:
        declared = declared_parameters(source)
        unknown = set(PROFILES[profile].get(source.stem, {})) - set(declared)
        assert not unknown, f"profile {profile!r} sets {unknown} that {source.name} does not declare"


def test_unknown_override_is_refused_before_running():
    with pytest.raises(ValueError, match="not declared by any notebook"):
        plan(ROOT, "quick", {"no_such_parameter": 1})


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="profile must be one of"):
        plan(ROOT, "fast", {})


def test_only_the_default_run_writes_the_committed_book():
    assert run_name("quick", {}) is None
    assert run_name("paper", {}) == "paper"
    assert run_name("quick", {"n_train": 200}).startswith("quick_n_train-200_")


def test_only_selects_notebooks_and_refuses_unknown_ones():
    assert [s.stem for s in plan(ROOT, "quick", {}, ["01_chairs"])] == ["01_chairs"]
    with pytest.raises(ValueError, match="only must name notebooks"):
        plan(ROOT, "quick", {}, ["99_missing"])
