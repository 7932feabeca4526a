"""The on-disk cache of trained models and score matrices.

An entry is found by its *kind* (``"scores"``, ``"model"``, ...) and the parameters that produced
it. Its key is the SHA-256 of the canonical JSON of the kind, the parameters and infcore's version,
so changing any parameter (or upgrading infcore) computes afresh. Each entry is two files under
``root/kind/``:

``<key>.npz`` or ``<key>.pt``
    The value: a numpy array in an ``.npz`` file, or tensors and plain Python (dicts, lists,
    tuples, numbers, strings, ``None``) written by :func:`torch.save`.
``<key>.json``
    The parameters that produced the value, readable by people; loading refuses an entry whose
    stored parameters differ from the requested ones.

Every file is written to a temporary file in the same directory, flushed to disk and renamed over
its final name, and the JSON file is written last: an interrupted run leaves no entry (only, after a
hard kill, an ignored ``.tmp`` file), so the next run computes that entry again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import torch

from infcore import __version__

ENV_VAR = "INFCORE_CACHE"
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SUFFIX = {"npz": ".npz", "torch": ".pt"}

T = TypeVar("T")


class CacheMissError(KeyError):
    """The cache holds no entry for these parameters (or the cache is disabled)."""


class CacheMismatchError(ValueError):
    """A stored entry's parameters differ from the requested ones; delete the entry to recompute."""


def default_cache_root() -> Path:
    """The directory named by the environment variable ``INFCORE_CACHE``, else ~/.cache/infcore."""
    configured = os.environ.get(ENV_VAR, "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "infcore"


def canonical_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as plain JSON values: the form that is hashed and stored.

    Tuples become lists, dataclass instances become dicts (:func:`dataclasses.asdict`), numpy
    scalars become Python numbers. Note that ``1`` and ``1.0`` are different parameters.

    Parameters
    ----------
    params : Mapping[str, Any]
        Parameters with string keys and JSON-serialisable values.

    Returns
    -------
    dict

    Raises
    ------
    TypeError
        If a key is not a string or a value cannot be written as JSON (the message names where).
    ValueError
        If a float is nan or infinite.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of parameter names to values, got {params!r}")
    return _to_json(params, "params")


def _to_json(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; cache parameters must be finite numbers")
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_json(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        converted = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{where} has a key {name!r}; cache parameter keys must be strings")
            converted[name] = _to_json(item, f"{where}[{name!r}]")
        return converted
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} has type {type(value).__name__}, which cannot be a cache parameter: use None, "
        "bool, int, float, str, lists, tuples, dicts with string keys, or dataclasses of these"
    )


def _value_format(value: Any) -> str:
    """``"npz"`` for a numpy array, ``"torch"`` for tensors and plain Python, else TypeError."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("value is a numpy array of Python objects, which cannot be cached")
        return "npz"
    _check_torch_value(value, "value")
    return "torch"


def _check_torch_value(value: Any, where: str) -> None:
    # torch.load(weights_only=True) reads back these exact types (subclasses such as enums or
    # named tuples would be written but refused on load).
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_torch_value(item, f"{where}[{i}]")
        return
    if type(value) in (dict, OrderedDict):
        for name, item in value.items():
            if not isinstance(name, (str, int)):
                raise TypeError(f"{where} has a key {name!r}; cached dicts need str or int keys")
            _check_torch_value(item, f"{where}[{name!r}]")
        return
    raise TypeError(
        f"{where} has type {type(value).__name__}, which cannot be cached: use a numpy array, or "
        "tensors, None, bool, int, float, str in lists, tuples and dicts (convert numpy arrays "
        "inside containers with torch.from_numpy, dataclasses with dataclasses.asdict)"
    )


def _compact(value: Any) -> Any:
    """``value`` with every tensor that views a larger storage copied, so only its data is saved."""
    if isinstance(value, torch.Tensor):
        if value.untyped_storage().nbytes() > value.numel() * value.element_size():
            return value.detach().clone()
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_compact(item) for item in value)
    if isinstance(value, dict):
        return {name: _compact(item) for name, item in value.items()}
    return value


def _write_npz(file: IO[bytes], value: np.ndarray) -> None:
    np.savez(file, value=value)


def _write_torch(file: IO[bytes], value: Any) -> None:
    torch.save(value, file)


def _write_json(file: IO[bytes], record: Mapping[str, Any]) -> None:
    file.write(json.dumps(record, sort_keys=True, indent=2).encode() + b"\n")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in its directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable (not possible on every platform).
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class Cache:
    """Values keyed by a kind and the parameters that produced them, stored under ``root``.

    Parameters
    ----------
    root : str or os.PathLike or None
        Directory of the cache (created when first written). ``None`` disables the cache: nothing
        is stored, every look-up misses and :meth:`get_or_compute` always computes.
        :meth:`Cache.default` uses :func:`default_cache_root`.

    Examples
    --------
    >>> cache = Cache(None)
    >>> cache.get_or_compute("scores", {"method": "grad_dot", "seed": 0}, lambda: 1.5)
    1.5
    """

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = None if root is None else Path(root).expanduser()

    @classmethod
    def default(cls) -> Cache:
        """The cache under ``$INFCORE_CACHE``, or ``~/.cache/infcore`` when that is not set."""
        return cls(default_cache_root())

    @property
    def enabled(self) -> bool:
        """Whether values are stored (``root`` is not ``None``)."""
        return self.root is not None

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})" if self.enabled else "Cache(None)"

    def key(self, kind: str, params: Mapping[str, Any]) -> str:
        """SHA-256 (hex) of the canonical JSON of ``kind``, ``params`` and infcore's version.

        Parameters
        ----------
        kind : str
            What the value is, e.g. ``"scores"`` or ``"model"``: letters, digits, ``_``, ``.``,
            ``-``, starting with a letter or digit (it names a directory).
        params : Mapping[str, Any]
            Every parameter that affects the value, see :func:`canonical_params`.

        Returns
        -------
        str
            64 hexadecimal digits.
        """
        return _hash(self._record(kind, params))

    def has(self, kind: str, params: Mapping[str, Any]) -> bool:
        """Whether a complete entry for ``kind`` and ``params`` is stored."""
        try:
            self._entry(kind, params)
        except CacheMissError:
            return False
        return True

    def load(self, kind: str, params: Mapping[str, Any]) -> Any:
        """The stored value for ``kind`` and ``params``.

        Returns
        -------
        ndarray or object
            A numpy array, or what :meth:`save` was given otherwise (tensors are loaded on the CPU).

        Raises
        ------
        CacheMissError
            If no complete entry is stored, or the cache is disabled.
        CacheMismatchError
            If the stored entry was produced by other parameters.
        """
        path, value_format = self._entry(kind, params)
        if value_format == "npz":
            with np.load(path, allow_pickle=False) as archive:
                return archive["value"]
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, kind: str, params: Mapping[str, Any], value: Any) -> None:
        """Store ``value`` as the entry for ``kind`` and ``params`` (nothing when disabled).

        Parameters
        ----------
        kind : str
            See :meth:`key`.
        params : Mapping[str, Any]
            See :meth:`key`.
        value : ndarray or object
            A numpy array (saved as ``.npz``), or tensors, None, bool, int, float and str nested in
            lists, tuples and dicts (saved with :func:`torch.save`).

        Raises
        ------
        TypeError
            If ``value`` or ``params`` cannot be stored.
        """
        record = self._record(kind, params)
        value_format = _value_format(value)
        if self.root is None:
            return
        key = _hash(record)
        directory = self.root / kind
        directory.mkdir(parents=True, exist_ok=True)
        value_path = directory / f"{key}{_SUFFIX[value_format]}"
        if value_format == "npz":
            atomic_write(value_path, lambda file: _write_npz(file, value))
        else:
            atomic_write(value_path, lambda file: _write_torch(file, _compact(value)))
        record["format"] = value_format
        try:
            atomic_write(directory / f"{key}.json", lambda file: _write_json(file, record))
        except BaseException:
            value_path.unlink(missing_ok=True)  # leave no value without its parameters
            raise
        for other_format, suffix in _SUFFIX.items():
            if other_format != value_format:
                (directory / f"{key}{suffix}").unlink(missing_ok=True)

    def get_or_compute(self, kind: str, params: Mapping[str, Any], fn: Callable[[], T]) -> T:
        """The stored value for ``kind`` and ``params``, or ``fn()``, stored before it is returned.

        Parameters
        ----------
        kind : str
            See :meth:`key`.
        params : Mapping[str, Any]
            See :meth:`key`; they must describe everything ``fn`` depends on.
        fn : callable with no arguments
            Computes the value on a miss.

        Returns
        -------
        The loaded or computed value.
        """
        try:
            return self.load(kind, params)
        except CacheMissError:
            value = fn()
            self.save(kind, params, value)
            return value

    def _record(self, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError(
                f"kind must be a non-empty name of letters, digits, '_', '.' and '-' that starts "
                f"with a letter or digit, got {kind!r}"
            )
        return {"kind": kind, "infcore_version": __version__, "params": canonical_params(params)}

    def _entry(self, kind: str, params: Mapping[str, Any]) -> tuple[Path, str]:
        """Path and format of the stored value, after checking its parameters."""
        record = self._record(kind, params)
        if self.root is None:
            raise CacheMissError(f"the cache is disabled (no entry for {kind!r})")
        key = _hash(record)
        record_path = self.root / kind / f"{key}.json"
        try:
            stored = json.loads(record_path.read_text())
        except FileNotFoundError:
            raise CacheMissError(f"no {kind!r} entry with key {key}") from None
        except json.JSONDecodeError as error:
            raise CacheMismatchError(
                f"{record_path} is not valid JSON ({error}); delete it to recompute the entry"
            ) from None
        differing = sorted(name for name in record if stored.get(name) != record[name])
        if differing:
            raise CacheMismatchError(
                f"{record_path} was produced with other {', '.join(differing)} than requested "
                f"(stored {[stored.get(n) for n in differing]}, requested "
                f"{[record[n] for n in differing]}); delete the entry to recompute it"
            )
        value_format = stored.get("format")
        if value_format not in _SUFFIX:
            raise CacheMismatchError(
                f"{record_path} names an unknown value format {value_format!r}; delete the entry"
            )
        value_path = self.root / kind / f"{key}{_SUFFIX[value_format]}"
        if not value_path.exists():
            raise CacheMissError(f"the value file {value_path} of a {kind!r} entry is missing")
        return value_path, value_format


def _hash(record: Mapping[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
