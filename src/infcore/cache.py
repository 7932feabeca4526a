"""The on-disk cache of trained models and score matrices, verified on every load.

An entry is found by its *kind* (``"scores"``, ``"model"``, ...) and the parameters that produced
it. Its key is the SHA-256 of the canonical JSON of the kind, the parameters and infcore's version,
so changing any parameter (or upgrading infcore) computes afresh. Each entry is two files under
``root/kind/``:

``<key>.npz`` or ``<key>.pt``
    The value: a numpy array in an ``.npz`` file, or tensors and plain Python (dicts, lists,
    tuples, numbers, strings, ``None``) written by :func:`torch.save`.
``<key>.json``
    The record: the parameters that produced the value, readable by people, and the size and
    SHA-256 of the value file. Loading refuses an entry whose stored parameters differ from the
    requested ones.

Every file is written to a temporary file in the same directory, flushed to disk and renamed over
its final name, and the record is written last: an interrupted run leaves no entry (only, after a
hard kill, an ignored ``.tmp`` file), so the next run computes that entry again.

Every look-up (:meth:`Cache.has`, :meth:`Cache.load`) checks the value file against the size and
checksum in its record, and tensors are read with ``torch.load(weights_only=True)``, which runs no
pickled code. A damaged entry (a value file that is missing, truncated, changed or unreadable, or a
record that is not valid JSON) is never trusted: by default a :class:`CacheCorruptionWarning` names
the file and the problem, the damaged file is moved aside to ``<name>.corrupt``, its record is
removed, and the look-up misses, so the value is computed again. A strict cache
(``Cache(root, strict=True)``, or ``INFCORE_CACHE_STRICT=1`` for :meth:`Cache.default`) raises
:class:`CacheCorruptionError` instead and leaves the files as they are. A record without a checksum
(written by infcore before these checks) cannot be verified, so its entry is a miss and is
computed again.

Contents: :class:`Cache`, :func:`default_cache_root`, :func:`canonical_params`,
:func:`atomic_write`, and the errors :class:`CacheMissError`, :class:`CacheMismatchError`,
:class:`CacheCorruptionError` and the warning :class:`CacheCorruptionWarning`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import numpy as np
import torch

from infcore import __version__

ENV_VAR = "INFCORE_CACHE"
STRICT_ENV_VAR = "INFCORE_CACHE_STRICT"
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SUFFIX = {"npz": ".npz", "torch": ".pt"}

T = TypeVar("T")


class CacheMissError(KeyError):
    """The cache holds no entry for these parameters (or the cache is disabled)."""


class CacheMismatchError(ValueError):
    """A stored entry's parameters differ from the requested ones; delete the entry to recompute."""


class CacheCorruptionError(ValueError):
    """A strict cache found a damaged entry (the message names the file); delete it to recompute."""


class CacheCorruptionWarning(UserWarning):
    """A damaged entry (named in the message) was moved aside and will be computed again."""


def default_cache_root() -> Path:
    """The directory named by the environment variable ``INFCORE_CACHE``, else ~/.cache/infcore."""
    configured = os.environ.get(ENV_VAR, "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "infcore"


def _strict_from_environment() -> bool:
    configured = os.environ.get(STRICT_ENV_VAR, "")
    if configured not in ("", "0", "1"):
        raise ValueError(f"{STRICT_ENV_VAR} must be 0 or 1 (or unset), got {configured!r}")
    return configured == "1"


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
    strict : bool, default False
        What a look-up does with a damaged entry (see the module docstring): ``False`` warns
        (:class:`CacheCorruptionWarning`), moves the damaged file aside and misses, so the value
        is computed again; ``True`` raises :class:`CacheCorruptionError` and touches nothing.

    Examples
    --------
    >>> cache = Cache(None)
    >>> cache.get_or_compute("scores", {"method": "grad_dot", "seed": 0}, lambda: 1.5)
    1.5
    """

    def __init__(self, root: str | os.PathLike[str] | None, *, strict: bool = False) -> None:
        self.root = None if root is None else Path(root).expanduser()
        self.strict = strict

    @classmethod
    def default(cls) -> Cache:
        """The cache under ``$INFCORE_CACHE`` (else ``~/.cache/infcore``), strict when
        ``INFCORE_CACHE_STRICT=1``.

        Raises
        ------
        ValueError
            If ``INFCORE_CACHE_STRICT`` is set to something other than ``0`` or ``1``.
        """
        return cls(default_cache_root(), strict=_strict_from_environment())

    @property
    def enabled(self) -> bool:
        """Whether values are stored (``root`` is not ``None``)."""
        return self.root is not None

    def __repr__(self) -> str:
        if not self.enabled:
            return "Cache(None)"
        strict = ", strict=True" if self.strict else ""
        return f"Cache({str(self.root)!r}{strict})"

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
        """Whether a complete entry for ``kind`` and ``params`` is stored and its checksum holds.

        Raises
        ------
        CacheMismatchError
            If the stored entry was produced by other parameters.
        CacheCorruptionError
            If the cache is strict and the entry is damaged.
        """
        try:
            self._verified(kind, params)
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
            If no complete, verified entry is stored (a damaged one is reported with a
            :class:`CacheCorruptionWarning` and moved aside), or the cache is disabled.
        CacheMismatchError
            If the stored entry was produced by other parameters.
        CacheCorruptionError
            If the cache is strict and the entry is damaged.
        """
        record_path, value_path, value_format, data = self._verified(kind, params)
        try:
            return _read_value(data, value_format)
        except Exception:  # whatever numpy or torch raises, the file is unreadable
            pass
        # Reported outside the except clause: torch's message (which suggests the unsafe
        # weights_only=False) must not reach the user as the context of our error.
        self._damaged(value_path, record_path, f"cannot be read as a {value_format} file")

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
        buffer = io.BytesIO()
        if value_format == "npz":
            _write_npz(buffer, value)
        else:
            _write_torch(buffer, _compact(value))
        data = buffer.getvalue()
        atomic_write(value_path, lambda file: file.write(data))
        record.update(format=value_format, size=len(data), sha256=hashlib.sha256(data).hexdigest())
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

    def _verified(self, kind: str, params: Mapping[str, Any]) -> tuple[Path, Path, str, bytes]:
        """Record path, value path, format and bytes of the stored value, after every check."""
        record = self._record(kind, params)
        if self.root is None:
            raise CacheMissError(f"the cache is disabled (no entry for {kind!r})")
        key = _hash(record)
        record_path = self.root / kind / f"{key}.json"
        try:
            stored = json.loads(record_path.read_text())
        except FileNotFoundError:
            raise CacheMissError(f"no {kind!r} entry with key {key}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            stored = None
        if not isinstance(stored, dict):
            self._damaged(record_path, record_path, "is not a readable JSON record")
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
        if "sha256" not in stored:
            raise CacheMissError(
                f"{record_path} holds no checksum (written by an earlier infcore), so its entry "
                "cannot be verified and is computed again"
            )
        value_path = self.root / kind / f"{key}{_SUFFIX[value_format]}"
        data, problem = b"", None
        try:
            data = value_path.read_bytes()
        except FileNotFoundError:
            problem = "is missing"
        except OSError as error:
            problem = f"cannot be read ({error.strerror})"
        else:
            if len(data) != stored.get("size"):
                problem = f"has {len(data)} bytes where its record says {stored.get('size')!r}"
            elif hashlib.sha256(data).hexdigest() != stored["sha256"]:
                problem = "does not match the SHA-256 checksum in its record"
        if problem is not None:
            self._damaged(value_path, record_path, problem)
        return record_path, value_path, value_format, data

    def _damaged(self, bad_path: Path, record_path: Path, problem: str) -> NoReturn:
        """Report the damaged ``bad_path``: raise if strict, else warn, move it aside and miss."""
        if self.strict:
            also = "" if bad_path == record_path else f" and {record_path}"
            raise CacheCorruptionError(
                f"{bad_path} {problem}; delete it{also} to compute the entry again (a cache that "
                f"is not strict does so itself; {STRICT_ENV_VAR}=1 makes the default one strict)"
            )
        aside = bad_path.with_name(f"{bad_path.name}.corrupt")
        if bad_path != record_path:
            record_path.unlink(missing_ok=True)  # first, so the entry is gone at once
        with contextlib.suppress(FileNotFoundError):
            os.replace(bad_path, aside)
            problem = f"{problem}; moved it to {aside.name}"
        warnings.warn(
            f"damaged cache entry: {bad_path} {problem}; computing the entry again",
            CacheCorruptionWarning,
            stacklevel=2,
        )
        raise CacheMissError(f"{bad_path} {problem}")


def _read_value(data: bytes, value_format: str) -> Any:
    if value_format == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return archive["value"]
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _hash(record: Mapping[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
