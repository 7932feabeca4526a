"""Tests of infcore.cache: keys, round trips, parameter checks and atomic writes."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import infcore
import infcore.cache as cache_module
from infcore.cache import (
    Cache,
    CacheMismatchError,
    CacheMissError,
    canonical_params,
    default_cache_root,
)

PARAMS = {"method": "grad_dot", "seeds": (0, 1), "lr": 0.1, "n_train": 200}


@dataclasses.dataclass(frozen=True)
class Config:
    epochs: int = 5
    lr: float = 0.1
    shape: tuple = (1, 28)


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- keys ---------------------------------------------------------------------------------------


def test_key_is_sha256_of_canonical_json():
    record = {
        "infcore_version": infcore.__version__,
        "kind": "scores",
        "params": {"lr": 0.1, "method": "grad_dot", "n_train": 200, "seeds": [0, 1]},
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    assert Cache(None).key("scores", PARAMS) == hashlib.sha256(text.encode()).hexdigest()


def test_key_depends_on_every_parameter_kind_and_version(monkeypatch):
    cache = Cache(None)
    base = cache.key("scores", PARAMS)
    reordered = dict(reversed(list(PARAMS.items())))
    assert cache.key("scores", reordered) == base
    assert cache.key("scores", {**PARAMS, "seeds": [0, 1]}) == base  # tuple == list
    assert cache.key("scores", {**PARAMS, "n_train": np.int64(200)}) == base
    assert cache.key("scores", {**PARAMS, "lr": 0.2}) != base
    assert cache.key("scores", {**PARAMS, "seeds": (1, 0)}) != base
    assert cache.key("scores", {**PARAMS, "n_train": 200.0}) != base  # int and float differ
    assert cache.key("model", PARAMS) != base
    monkeypatch.setattr(cache_module, "__version__", "99.0")
    assert cache.key("scores", PARAMS) != base


def test_dataclass_params_are_their_fields():
    assert canonical_params({"config": Config()}) == {
        "config": {"epochs": 5, "lr": 0.1, "shape": [1, 28]}
    }
    cache = Cache(None)
    assert cache.key("model", {"config": Config()}) == cache.key(
        "model", {"config": {"epochs": 5, "lr": 0.1, "shape": [1, 28]}}
    )


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"x": object()}, TypeError, r"params\['x'\] has type object"),
        ({"x": [1, np.zeros(2)]}, TypeError, r"params\['x'\]\[1\] has type ndarray"),
        ({"x": Path("a")}, TypeError, "cannot be a cache parameter"),
        ({"x": {1: 2}}, TypeError, "keys must be strings"),
        ({"x": float("nan")}, ValueError, "finite"),
        ([("x", 1)], TypeError, "params must be a mapping"),
    ],
)
def test_params_that_cannot_be_keys(params, error, match):
    with pytest.raises(error, match=match):
        Cache(None).key("scores", params)


@pytest.mark.parametrize("kind", ["", "../up", "a/b", ".hidden", 3])
def test_bad_kind(kind):
    with pytest.raises(ValueError, match="kind must be"):
        Cache(None).key(kind, PARAMS)


# --- round trips --------------------------------------------------------------------------------


def test_array_round_trip_and_files(tmp_path):
    cache = Cache(tmp_path)
    scores = np.random.default_rng(0).normal(size=(3, 5))
    assert not cache.has("scores", PARAMS)
    cache.save("scores", PARAMS, scores)
    assert cache.has("scores", PARAMS)
    loaded = cache.load("scores", PARAMS)
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, scores)
    key = cache.key("scores", PARAMS)
    assert files(tmp_path) == [f"scores/{key}.json", f"scores/{key}.npz"]
    stored = json.loads((tmp_path / "scores" / f"{key}.json").read_text())
    assert stored["params"] == canonical_params(PARAMS)
    assert stored["format"] == "npz"


def test_torch_round_trip(tmp_path):
    cache = Cache(tmp_path)
    value = {
        "params": {"fc.weight": torch.randn(2, 3), "fc.bias": torch.zeros(2)},
        "checkpoints": [{"w": torch.ones(1)}, {"w": torch.full((1,), 2.0)}],
        "lrs": (0.1, 0.05),
        "excluded": None,
        "name": "grad_dot",
    }
    cache.save("model", PARAMS, value)
    loaded = Cache(tmp_path).load("model", PARAMS)
    assert loaded.keys() == value.keys()
    for name, tensor in value["params"].items():
        torch.testing.assert_close(loaded["params"][name], tensor, rtol=0, atol=0)
    torch.testing.assert_close(loaded["checkpoints"][1]["w"], torch.full((1,), 2.0))
    assert loaded["lrs"] == (0.1, 0.05) and loaded["excluded"] is None
    assert loaded["name"] == "grad_dot"


def test_saving_a_view_stores_only_its_data(tmp_path):
    cache = Cache(tmp_path)
    big = torch.zeros(100_000)
    cache.save("model", PARAMS, {"w": big[:10]})
    torch.testing.assert_close(cache.load("model", PARAMS)["w"], torch.zeros(10))
    assert (tmp_path / "model" / f"{cache.key('model', PARAMS)}.pt").stat().st_size < 20_000


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([{}, 1], dtype=object), "objects"),
        (Config(), "has type Config"),
        ({"w": np.zeros(2)}, r"value\['w'\] has type ndarray"),
        ({(1, 2): torch.ones(1)}, "str or int keys"),
    ],
)
def test_values_that_cannot_be_stored(tmp_path, value, match):
    with pytest.raises(TypeError, match=match):
        Cache(tmp_path).save("model", PARAMS, value)
    assert files(tmp_path) == []


def test_get_or_compute_computes_once(tmp_path):
    compute = Counter(np.arange(4.0))
    first = Cache(tmp_path).get_or_compute("scores", PARAMS, compute)
    second = Cache(tmp_path).get_or_compute("scores", PARAMS, compute)
    assert compute.calls == 1
    np.testing.assert_array_equal(first, second)
    Cache(tmp_path).get_or_compute("scores", {**PARAMS, "lr": 0.2}, compute)
    assert compute.calls == 2


def test_stored_params_that_differ_are_refused(tmp_path):
    cache = Cache(tmp_path)
    cache.save("scores", PARAMS, np.zeros(2))
    record_path = tmp_path / "scores" / f"{cache.key('scores', PARAMS)}.json"
    stored = json.loads(record_path.read_text())
    stored["params"]["lr"] = 0.5
    record_path.write_text(json.dumps(stored))
    with pytest.raises(CacheMismatchError, match="other params"):
        cache.load("scores", PARAMS)
    record_path.write_text("{not json")
    with pytest.raises(CacheMismatchError, match="not valid JSON"):
        cache.get_or_compute("scores", PARAMS, Counter(np.ones(2)))


# --- interrupted writes -------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def write_half_then_fail(file, value):
    file.write(b"PK\x03\x04 half an archive")
    raise Interrupted


@pytest.mark.parametrize("writer", ["_write_npz", "_write_torch", "_write_json"])
def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch, writer):
    value = np.ones(3) if writer != "_write_torch" else {"w": torch.ones(3)}
    cache = Cache(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(cache_module, writer, write_half_then_fail)
        with pytest.raises(Interrupted):
            cache.get_or_compute("scores", PARAMS, Counter(value))
    assert files(tmp_path) == []
    assert not cache.has("scores", PARAMS)
    compute = Counter(value)
    cache.get_or_compute("scores", PARAMS, compute)
    assert compute.calls == 1
    assert cache.has("scores", PARAMS)


def test_interrupted_overwrite_keeps_the_old_entry(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    cache.save("scores", PARAMS, np.zeros(2))
    monkeypatch.setattr(cache_module, "_write_npz", write_half_then_fail)
    with pytest.raises(Interrupted):
        cache.save("scores", PARAMS, np.ones(2))
    np.testing.assert_array_equal(cache.load("scores", PARAMS), np.zeros(2))
    assert len(files(tmp_path)) == 2


def test_leftovers_of_a_killed_run_are_ignored(tmp_path):
    cache = Cache(tmp_path)
    key = cache.key("scores", PARAMS)
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / f".{key}.npz.abc.tmp").write_bytes(b"partial")
    (tmp_path / "scores" / f"{key}.npz").write_bytes(b"value without its parameters")
    assert not cache.has("scores", PARAMS)
    np.testing.assert_array_equal(cache.get_or_compute("scores", PARAMS, Counter(np.ones(2))), 1.0)
    np.testing.assert_array_equal(cache.load("scores", PARAMS), np.ones(2))


def test_missing_value_file_is_a_miss(tmp_path):
    cache = Cache(tmp_path)
    cache.save("scores", PARAMS, np.zeros(2))
    (tmp_path / "scores" / f"{cache.key('scores', PARAMS)}.npz").unlink()
    with pytest.raises(CacheMissError):
        cache.load("scores", PARAMS)


# --- disabled cache and default root ------------------------------------------------------------


def test_disabled_cache_always_computes():
    cache = Cache(None)
    assert not cache.enabled
    compute = Counter(np.ones(2))
    cache.get_or_compute("scores", PARAMS, compute)
    cache.get_or_compute("scores", PARAMS, compute)
    assert compute.calls == 2
    cache.save("scores", PARAMS, np.ones(2))
    with pytest.raises(CacheMissError):
        cache.load("scores", PARAMS)
    with pytest.raises(TypeError):
        cache.save("scores", {"x": object()}, np.ones(2))


def test_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("INFCORE_CACHE", str(tmp_path / "here"))
    assert default_cache_root() == tmp_path / "here"
    assert Cache.default().root == tmp_path / "here"
    monkeypatch.delenv("INFCORE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / ".cache" / "infcore"
