"""Tests of infcore.cache: keys, round trips, parameter checks, atomic writes and verification."""

import dataclasses
import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import infcore
import infcore.cache as cache_module
from infcore.cache import (
    Cache,
    CacheCorruptionError,
    CacheCorruptionWarning,
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


def test_missing_value_file_is_a_reported_miss(tmp_path):
    cache = Cache(tmp_path)
    cache.save("scores", PARAMS, np.zeros(2))
    value_path = tmp_path / "scores" / f"{cache.key('scores', PARAMS)}.npz"
    value_path.unlink()
    with pytest.warns(CacheCorruptionWarning, match=re.escape(f"{value_path} is missing")):
        with pytest.raises(CacheMissError):
            cache.load("scores", PARAMS)
    assert files(tmp_path) == []


# --- verification of stored entries -------------------------------------------------------------

ARRAY = np.arange(6.0).reshape(2, 3) + 0.25
MODEL = {"w": torch.arange(6.0, dtype=torch.float64) + 0.25, "lrs": (0.1, 0.05)}


def stored_entry(tmp_path, suffix, **options):
    """A cache holding ARRAY (``.npz``) or MODEL (``.pt``), its kind, and its two file paths."""
    cache = Cache(tmp_path, **options)
    kind, value = ("scores", ARRAY) if suffix == ".npz" else ("model", MODEL)
    Cache(tmp_path).save(kind, PARAMS, value)
    key = cache.key(kind, PARAMS)
    return cache, kind, tmp_path / kind / f"{key}{suffix}", tmp_path / kind / f"{key}.json"


def fresh(suffix):
    """A compute function that returns a fresh copy of the stored value."""
    if suffix == ".npz":
        return Counter(ARRAY.copy())
    return Counter({"w": MODEL["w"].clone(), "lrs": MODEL["lrs"]})


def assert_same_value(loaded, suffix):
    if suffix == ".npz":
        np.testing.assert_array_equal(loaded, ARRAY)
    else:
        torch.testing.assert_close(loaded["w"], MODEL["w"], rtol=0, atol=0)
        assert loaded["lrs"] == MODEL["lrs"]


def flip_a_value_byte(path, data):
    """Change one byte inside the stored numbers (so that the file still parses)."""
    content = bytearray(path.read_bytes())
    start = bytes(content).index(data)
    content[start + 3] ^= 0x01
    path.write_bytes(bytes(content))


def value_bytes(suffix):
    return ARRAY.tobytes() if suffix == ".npz" else MODEL["w"].numpy().tobytes()


SUFFIXES = [".npz", ".pt"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_record_holds_size_and_sha256_of_the_value_file(tmp_path, suffix):
    _, _, value_path, record_path = stored_entry(tmp_path, suffix)
    stored = json.loads(record_path.read_text())
    content = value_path.read_bytes()
    assert stored["size"] == len(content)
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_verified_round_trip_hits_without_recomputing_or_warning(tmp_path, suffix):
    cache, kind, _, _ = stored_entry(tmp_path, suffix)
    compute = fresh(suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        assert cache.has(kind, PARAMS)
        assert_same_value(cache.get_or_compute(kind, PARAMS, compute), suffix)
    assert compute.calls == 0


def damage_flip(path, suffix):
    flip_a_value_byte(path, value_bytes(suffix))


def damage_truncate(path, suffix):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_garbage(path, suffix):
    path.write_bytes(b"\x80\x02garbage, not a cache value" * 8)


DAMAGES = {
    "one byte flipped": (damage_flip, "does not match the SHA-256"),
    "truncated": (damage_truncate, "bytes where its record says"),
    "garbage": (damage_garbage, "bytes where its record says"),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_value_is_reported_moved_aside_and_recomputed(tmp_path, suffix, damage):
    cache, kind, value_path, record_path = stored_entry(tmp_path, suffix)
    damage_file, problem = DAMAGES[damage]
    damage_file(value_path, suffix)
    compute = fresh(suffix)
    with pytest.warns(CacheCorruptionWarning) as caught:
        value = cache.get_or_compute(kind, PARAMS, compute)
    [warning] = caught
    message = str(warning.message)
    assert str(value_path) in message and problem in message and "\n" not in message
    assert "weights_only" not in message
    assert compute.calls == 1
    assert_same_value(value, suffix)
    assert value_path.with_name(value_path.name + ".corrupt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        assert_same_value(cache.get_or_compute(kind, PARAMS, compute), suffix)
    assert compute.calls == 1


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_damage_found_by_has_makes_the_caller_recompute(tmp_path, suffix):
    cache, kind, value_path, _ = stored_entry(tmp_path, suffix)
    damage_flip(value_path, suffix)
    with pytest.warns(CacheCorruptionWarning, match=re.escape(str(value_path))):
        assert not cache.has(kind, PARAMS)
    with pytest.raises(CacheMissError):
        cache.load(kind, PARAMS)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_unreadable_file_with_a_matching_checksum_hides_torch_advice(tmp_path, suffix):
    cache, kind, value_path, record_path = stored_entry(tmp_path, suffix)
    garbage = b"\x80\x02garbage, not a cache value"
    value_path.write_bytes(garbage)
    stored = json.loads(record_path.read_text())
    stored.update(size=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
    record_path.write_text(json.dumps(stored))
    with pytest.warns(CacheCorruptionWarning, match=re.escape(f"{value_path} cannot be read")):
        with pytest.raises(CacheMissError) as raised:
            cache.load(kind, PARAMS)
    assert raised.value.__context__ is None and "weights_only" not in str(raised.value)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_record_without_checksum_is_recomputed(tmp_path, suffix):
    cache, kind, value_path, record_path = stored_entry(tmp_path, suffix)
    stored = json.loads(record_path.read_text())
    del stored["sha256"], stored["size"]  # as written by infcore before the checksums
    record_path.write_text(json.dumps(stored))
    damage_flip(value_path, suffix)  # such an entry cannot be trusted, damaged or not
    compute = fresh(suffix)
    assert not cache.has(kind, PARAMS)
    assert_same_value(cache.get_or_compute(kind, PARAMS, compute), suffix)
    assert compute.calls == 1
    assert "sha256" in json.loads(record_path.read_text())


def test_unreadable_record_is_moved_aside_and_recomputed(tmp_path):
    cache, kind, _, record_path = stored_entry(tmp_path, ".npz")
    record_path.write_text("{not json")
    compute = fresh(".npz")
    with pytest.warns(CacheCorruptionWarning, match=re.escape(f"{record_path} is not a readable")):
        assert_same_value(cache.get_or_compute(kind, PARAMS, compute), ".npz")
    assert compute.calls == 1
    assert record_path.with_name(record_path.name + ".corrupt").read_text() == "{not json"
    assert cache.has(kind, PARAMS)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("damage", DAMAGES)
def test_strict_cache_refuses_a_damaged_entry(tmp_path, suffix, damage):
    cache, kind, value_path, _ = stored_entry(tmp_path, suffix, strict=True)
    DAMAGES[damage][0](value_path, suffix)
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}
    compute = fresh(suffix)
    for look_up in (lambda: cache.has(kind, PARAMS), lambda: cache.load(kind, PARAMS),
                    lambda: cache.get_or_compute(kind, PARAMS, compute)):
        with pytest.raises(CacheCorruptionError, match=re.escape(str(value_path))) as raised:
            look_up()
        assert "weights_only" not in str(raised.value)
    assert compute.calls == 0
    assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before


def test_strict_cache_refuses_an_unreadable_record(tmp_path):
    cache, kind, _, record_path = stored_entry(tmp_path, ".npz", strict=True)
    record_path.write_text("{not json")
    with pytest.raises(CacheCorruptionError, match=re.escape(str(record_path))):
        cache.load(kind, PARAMS)


def test_strict_default_cache_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("INFCORE_CACHE", str(tmp_path))
    monkeypatch.delenv("INFCORE_CACHE_STRICT", raising=False)
    assert not Cache.default().strict
    monkeypatch.setenv("INFCORE_CACHE_STRICT", "1")
    assert Cache.default().strict
    assert repr(Cache.default()) == f"Cache({str(tmp_path)!r}, strict=True)"
    monkeypatch.setenv("INFCORE_CACHE_STRICT", "yes")
    with pytest.raises(ValueError, match="INFCORE_CACHE_STRICT must be 0 or 1"):
        Cache.default()


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
