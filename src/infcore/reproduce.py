"""Does a re-executed book reproduce the committed one? Numbers compared with stated tolerances.

float32 training is not bit-identical across CPUs and thread counts, so a re-executed notebook is
compared with the committed one number by number, not digit by digit: every output of a cell is cut
into its text with the numbers taken out (which must match exactly: words, verdicts, table
layout) and the numbers themselves, each compared with the tolerance of its *kind*. A figure is
compared by its pixels. ``tests/nbval_tolerant.py`` plugs :func:`compare_outputs` into
``pytest --nbval``; ``python -m infcore.reproduce REF NEW [NEW ...]`` compares folders of executed
notebooks and prints how far every kind of number moved (how the README's table was measured).

A code cell names the kinds of its numbers in its metadata (in the jupytext source:
``# %% tolerance="correlation"`` or ``# %% tolerance={"default": "correlation", "top_overlap":
"percent"}``). The keys of a mapping are matched against a number's *label*: the glue name of a
glued value, or any header of the table column a number sits in; ``default`` covers the rest. A
cell without the key is compared exactly.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """``|new - ref| <= abs + rel * |ref|``, or with ``factor``: ``new`` within a factor of ``ref``
    (same sign), both values below ``abs`` counting as zero. For figures, ``abs`` is the share of pixels allowed to differ by more than a
    quarter of the colour range."""

    abs: float
    rel: float
    why: str
    factor: float | None = None

    def allows(self, ref: float, new: float) -> bool:
        if math.isnan(ref) or math.isnan(new):
            return math.isnan(ref) and math.isnan(new)
        if math.isinf(ref) or math.isinf(new):
            return ref == new
        if self.factor is not None:  # below `abs`, a number counts as zero
            if abs(ref) <= self.abs or abs(new) <= self.abs:
                return abs(ref) <= self.abs and abs(new) <= self.abs
            return ref * new > 0 and 1 / self.factor <= new / ref <= self.factor
        return abs(new - ref) <= self.abs + self.rel * abs(ref)

    def __str__(self) -> str:
        if self.factor is not None:
            return f"within a factor {self.factor:g}"
        return f"{self.abs:g} + {self.rel:g} |committed|"


# Tolerances per kind of number, set with a margin above the largest spread measured between the
# committed book and the quick book re-executed from empty caches on four emulated machines (one
# thread; AVX2 kernels; ATen's portable kernels with oneDNN at SSE4.1, with and without MKL at
# SSE4.2): the README's "How closely the book reproduces" lists them; `python -m infcore.reproduce
# book RUN...` measures them again.
#: The tolerance of each kind of number, by name.
KINDS: dict[str, Tolerance] = {
    "exact": Tolerance(0.0, 1e-9, "closed-form float64 results (the chairs, the 2-D toys), counts, "
                                  "verdicts, parameters and the committed paper-profile tables: "
                                  "equal to display precision (full-precision values to 1e-9)"),
    "correlation": Tolerance(0.005, 0.0, "means of Pearson and Spearman correlations and other "
                                         "statistics on a 0-1 scale (AUPRC, shares, accuracies, "
                                         "mean normalised scores) of float32-trained networks"),
    "divergent": Tolerance(0.2, 0.0, "statistics on a 0-1 scale of the quick poisoning page, "
                                      "whose few models (20 epochs at learning rate 0.3 on 200 "
                                      "images) end up classifying single images differently on "
                                      "another CPU: measured up to 0.09 between two emulated "
                                      "machines; the verdicts did not move"),
    "percent": Tolerance(0.5, 0.0, "top-10% overlaps in percent: one changed member of one test "
                                   "example's top-10 set moves a mean over 20 test examples by "
                                   "0.5 points"),
    "magnitude": Tolerance(0.0, 1e-3, "sizes on their own scale (losses, dampings, score "
                                      "magnitudes, credits of the toys): 0.1% relative"),
    "noise": Tolerance(1e-12, 0.0, "float32 rounding noise, which by nature differs between "
                                   "CPUs and thread counts: only its order of magnitude is "
                                   "reproduced (below 1e-12 a number counts as zero)",
                       factor=10.0),
    "noise_tail": Tolerance(1e-12, 0.0, "the largest of many float32 rounding differences: one "
                                        "retraining whose rounding grew more than the others' "
                                        "sets it, so it varies far more than a percentile "
                                        "(measured: 4.6e-8 to 9.7e-6 for page 2's largest of 320, "
                                        "where the committed book has 6.2e-8); only a bound is "
                                        "reproduced", factor=1000.0),
    "figure": Tolerance(0.01, 0.0, "figures: at most 1% of the pixels may differ by more than a "
                                   "quarter of the colour range (antialiased lines shifted by a "
                                   "fraction of a pixel)"),
}

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_SPACES = re.compile(r"\s+")
_IMAGE = re.compile(r"(^|/)image/(png|jpeg)$")


def kind_of(label: str | tuple[str, ...], spec: str | Mapping[str, str] | None) -> str:
    """The kind of a number with ``label`` (a glue name or a column's headers) under a cell's spec.

    Raises
    ------
    ValueError
        If the spec names a kind that :data:`KINDS` does not define.
    """
    if spec is None:
        kind = "exact"
    elif isinstance(spec, str):
        kind = spec
    else:
        parts = (label,) if isinstance(label, str) else tuple(label)
        kind = next((spec[p] for p in parts if p in spec), spec.get("default", "exact"))
    if kind not in KINDS:
        raise ValueError(f"tolerance kind must be one of {sorted(KINDS)}; got {kind!r}")
    return kind


def split_numbers(text: str) -> tuple[str, list[float]]:
    """``text`` with every number replaced by ``#`` and runs of white space by one space, and the
    numbers in order."""
    numbers = [float(m.group()) for m in _NUMBER.finditer(text)]
    skeleton = _SPACES.sub(" ", _NUMBER.sub("#", text)).strip()
    return skeleton, numbers


class _TableCells(HTMLParser):
    """The cells of the HTML tables pandas writes, each with the headers of its column."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.header_rows: list[list[str]] = []
        self.cells: list[tuple[tuple[str, ...], str]] = []
        self._section = ""
        self._row: list[tuple[str, int, int]] | None = None
        self._text: list[str] | None = None
        self._span = (1, 1)
        self._pending: dict[int, tuple[int, str]] = {}  # column -> (rows left, text) of a rowspan

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "tr":
            self._row = []
        elif tag in ("th", "td"):
            found = dict(attrs)
            self._text = []
            self._span = (int(found.get("colspan") or 1), int(found.get("rowspan") or 1))

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._text is not None and self._row is not None:
            self._row.append(("".join(self._text).strip(), *self._span))
            self._text = None
        elif tag == "tr" and self._row is not None:
            flat: list[str] = []
            for text, colspan, rowspan in self._row:
                while len(flat) in self._pending:  # a cell of a row above spans this one
                    flat.append(self._take_pending(len(flat)))
                for _ in range(colspan):
                    if rowspan > 1:
                        self._pending[len(flat)] = (rowspan - 1, text)
                    flat.append(text)
            while len(flat) in self._pending:
                flat.append(self._take_pending(len(flat)))
            if self._section == "thead":
                self.header_rows.append(flat)
            else:
                for column, text in enumerate(flat):
                    headers = tuple(row[column] for row in self.header_rows
                                    if column < len(row) and row[column])
                    self.cells.append((headers, text))
            self._row = None


    def _take_pending(self, column: int) -> str:
        rows, text = self._pending.pop(column)
        if rows > 1:
            self._pending[column] = (rows - 1, text)
        return text


def table_cells(html: str) -> list[tuple[tuple[str, ...], str]]:
    """``(column headers, text)`` of every body cell of the tables in ``html``, in order."""
    parser = _TableCells()
    parser.feed(html)
    return parser.cells


@dataclass(frozen=True)
class Number:
    """One number of a cell's output: where it is, its label, its kind and the two values."""

    where: str
    label: str
    kind: str
    ref: float
    new: float

    @property
    def within(self) -> bool:
        return KINDS[self.kind].allows(self.ref, self.new)

    @property
    def deviation(self) -> float:
        """``|new - ref|``, relative to ``|ref|`` for the relative kinds, or the factor
        ``max(new/ref, ref/new)`` for the ``noise`` kind."""
        tolerance = KINDS[self.kind]
        if tolerance.factor is not None and self.ref * self.new > 0:
            return max(self.new / self.ref, self.ref / self.new)
        diff = abs(self.new - self.ref)
        if tolerance.rel > 0 and self.ref != 0:
            return diff / abs(self.ref)
        return diff


class Mismatch(AssertionError):
    """Two outputs differ in their text, or in a number beyond its tolerance."""


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _pairs(where: str, label: Any, kind: str | tuple[str, ...], ref: str, new: str) -> list[Number]:
    """The numbers of two texts that differ only in their numbers; with several kinds, each
    number is judged by the first kind that allows it (the first kind if none does)."""
    ref_skeleton, ref_numbers = split_numbers(ref)
    new_skeleton, new_numbers = split_numbers(new)
    if ref_skeleton != new_skeleton or len(ref_numbers) != len(new_numbers):
        first = next((i for i, (a, b) in enumerate(zip(ref_skeleton, new_skeleton)) if a != b),
                     min(len(ref_skeleton), len(new_skeleton)))
        start = max(0, first - 200)
        raise Mismatch(f"{where}: the text differs at character {first} (numbers shown as #):\n"
                       f"  committed: ...{ref_skeleton[start:first + 200]}\n"
                       f"  new:       ...{new_skeleton[start:first + 200]}")
    name = label if isinstance(label, str) else "/".join(label)
    kinds = (kind,) if isinstance(kind, str) else kind
    return [Number(where, name, next((k for k in kinds if KINDS[k].allows(a, b)), kinds[0]), a, b)
            for a, b in zip(ref_numbers, new_numbers)]


def pixel_difference(ref_png: str, new_png: str) -> float:
    """Share of pixels of two base64 PNGs that differ by more than a quarter of the colour range
    in some channel (1.0 if their sizes differ)."""
    from PIL import Image

    def pixels(data: str) -> np.ndarray:
        image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA")
        return np.asarray(image, dtype=np.int16)

    a, b = pixels(ref_png), pixels(new_png)
    if a.shape != b.shape:
        return 1.0
    return float((np.abs(a - b).max(axis=-1) > 64).mean())


def _outputs_by_field(outputs: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[Any, str]]]:
    """Output texts per field (stdout, or a MIME type), each with its glue name (or ``None``);
    stderr (progress bars, warnings) is left out and consecutive stdout texts are joined."""
    fields: dict[str, list[tuple[Any, str]]] = {}
    stdout: list[str] = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            if output.get("name") == "stdout":
                stdout.append(_text(output.get("text", "")))
            continue
        if kind == "error":
            fields.setdefault("error", []).append((None, f"{output.get('ename')}: "
                                                         f"{output.get('evalue')}"))
            continue
        glue = (output.get("metadata") or {}).get("scrapbook", {}).get("name")
        for mime, value in (output.get("data") or {}).items():
            fields.setdefault(mime, []).append((glue, _text(value)))
    if stdout:
        fields["stdout"] = [(None, "".join(stdout))]
    return fields


def compare_outputs(
    ref_outputs: Iterable[Mapping[str, Any]],
    new_outputs: Iterable[Mapping[str, Any]],
    spec: str | Mapping[str, str] | None,
    where: str = "cell",
    sanitize=lambda text: text,
) -> list[Number]:
    """Compare a cell's committed outputs with freshly computed ones.

    Parameters
    ----------
    ref_outputs, new_outputs
        nbformat output dicts of the same cell.
    spec
        The cell's ``tolerance`` metadata (see the module docstring).
    where
        Prefix of the places named in the result and in errors.
    sanitize
        Applied to every text before comparing (nbval's sanitizers).

    Returns
    -------
    list of Number
        Every number compared, with its kind; check ``within`` on each.

    Raises
    ------
    Mismatch
        If the outputs differ in anything but their numbers: other fields, another count of
        outputs, other words, another table layout, or a figure beyond its pixel tolerance.
    """
    ref, new = _outputs_by_field(ref_outputs), _outputs_by_field(new_outputs)
    if set(ref) != set(new):
        raise Mismatch(f"{where}: outputs {sorted(ref)} committed, {sorted(new)} now")
    numbers: list[Number] = []
    for field in sorted(ref):
        if len(ref[field]) != len(new[field]):
            raise Mismatch(f"{where}: {len(ref[field])} outputs of {field} committed, "
                           f"{len(new[field])} now")
        for i, ((glue, a), (_, b)) in enumerate(zip(ref[field], new[field])):
            place = f"{where} {field}" + (f" {glue}" if glue else f" #{i}")
            if _IMAGE.search(field):
                share = pixel_difference(a, b)
                numbers.append(Number(place, glue or field, "figure", 0.0, share))
            elif field == "text/html" and "<table" in a:
                ref_cells, new_cells = table_cells(sanitize(a)), table_cells(sanitize(b))
                if [c for c, _ in ref_cells] != [c for c, _ in new_cells]:
                    raise Mismatch(f"{place}: the table's columns or size differ")
                for (column, x), (_, y) in zip(ref_cells, new_cells):
                    numbers += _pairs(f"{place} [{'/'.join(column)}]", column,
                                      kind_of(column, spec), x, y)
            else:
                if glue:
                    kind = kind_of(glue, spec)
                elif field == "text/plain" and "text/html" in ref:  # a table's plain-text twin
                    kind = _cell_kinds(spec)
                else:  # printed lines
                    kind = kind_of("", spec)
                numbers += _pairs(place, glue or field, kind, sanitize(a), sanitize(b))
    return numbers


def _cell_kinds(spec: str | Mapping[str, str] | None) -> tuple[str, ...]:
    """Every kind of a cell, for the plain-text twin of a table, whose numbers are checked column
    by column, each with its own kind, in the HTML twin: a number of the twin passes when one of
    them allows it (no kind is looser than another for every value: 0.1% of 0.5 is below 0.005)."""
    if spec is None or isinstance(spec, str):
        return (kind_of("", spec),)
    return tuple(dict.fromkeys(kind_of(k, spec) for k in spec))


def compare_notebooks(ref_path: Path, new_path: Path) -> list[Number]:
    """Every number of two executed versions of one notebook (cells matched in order).

    Cells tagged ``nbval-ignore-output`` (timings) are skipped, as ``pytest --nbval`` skips them.

    Raises
    ------
    Mismatch
        If the notebooks have different code cells or an output differs beyond its numbers.
    """
    ref_cells = [c for c in json.loads(Path(ref_path).read_text())["cells"] if c["cell_type"] == "code"]
    new_cells = [c for c in json.loads(Path(new_path).read_text())["cells"] if c["cell_type"] == "code"]
    if [_text(c["source"]) for c in ref_cells] != [_text(c["source"]) for c in new_cells]:
        raise Mismatch(f"{new_path}: its code cells are not those of {ref_path}")
    numbers: list[Number] = []
    for i, (a, b) in enumerate(zip(ref_cells, new_cells)):
        if "nbval-ignore-output" in a.get("metadata", {}).get("tags", []):
            continue
        numbers += compare_outputs(a.get("outputs", []), b.get("outputs", []),
                                   a.get("metadata", {}).get("tolerance"),
                                   where=f"{Path(ref_path).stem} cell {i}",
                                   sanitize=lambda t: re.sub(r"0x[0-9a-fA-F]+", "0xADDRESS", t))
    return numbers


def spread(ref_dir: Path, new_dirs: list[Path]):
    """How far every number of the notebooks in ``new_dirs`` moved from those in ``ref_dir``.

    Returns
    -------
    pandas.DataFrame
        One row per run and number: ``run``, ``where``, ``label``, ``kind``, ``ref``, ``new``,
        ``difference`` (absolute), ``deviation`` (what the kind's tolerance bounds: absolute,
        relative or a factor) and ``within`` (its kind's tolerance).
    """
    import pandas as pd

    rows = []
    for new_dir in new_dirs:
        for ref_path in sorted(Path(ref_dir).glob("*.ipynb")):
            new_path = Path(new_dir) / ref_path.name
            if not new_path.exists():
                continue
            for n in compare_notebooks(ref_path, new_path):
                rows.append({"run": Path(new_dir).name, "where": n.where, "label": n.label,
                             "kind": n.kind, "ref": n.ref, "new": n.new,
                             "difference": abs(n.new - n.ref), "deviation": n.deviation,
                             "within": n.within})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare executed notebooks with a reference folder (e.g. book/), number by "
                    "number, and print how far each kind of number moved.")
    parser.add_argument("reference", type=Path, help="folder of executed notebooks, e.g. book")
    parser.add_argument("runs", type=Path, nargs="+", help="folders of re-executed notebooks")
    parser.add_argument("--csv", type=Path, help="also write every compared number to this file")
    args = parser.parse_args(argv)
    try:
        table = spread(args.reference, args.runs)
    except Mismatch as error:
        print(f"MISMATCH {error}", file=sys.stderr)
        return 1
    if table.empty:
        print(f"no notebook of {args.reference} has a namesake with numbers in "
              f"{', '.join(map(str, args.runs))}: give folders of executed notebooks",
              file=sys.stderr)
        return 2
    if args.csv:
        table.to_csv(args.csv, index=False)
    changed = table[table.difference > 0]
    summary = table.groupby(["kind", "run"]).agg(
        numbers=("difference", "size"), changed=("difference", lambda d: int((d > 0).sum())),
        largest_difference=("difference", "max"), largest_deviation=("deviation", "max"))
    summary["tolerance"] = [str(KINDS[k]) for k, _ in summary.index]
    print(summary.to_string())
    if len(changed):
        print("\nlargest deviations:")
        print(changed.sort_values("difference", ascending=False).head(15).to_string(index=False))
    beyond = table[~table.within]
    for row in beyond.itertuples():
        print(f"BEYOND TOLERANCE {row.run}: {row.where} ({row.kind}) {row.ref!r} -> {row.new!r}")
    return 1 if len(beyond) else 0


if __name__ == "__main__":
    raise SystemExit(main())
