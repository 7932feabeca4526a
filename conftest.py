"""``pytest --nbval`` compares the book's numbers with tolerances, not digit by digit.

nbval re-executes every cell of ``book/*.ipynb`` and compares its outputs with the committed ones.
Its own comparison is exact, which float32 training on another CPU cannot meet (see
``infcore.reproduce``). Here each cell's comparison is replaced by
:func:`infcore.reproduce.compare_outputs`: the text around the numbers must be identical (words,
verdicts, layout), each number must lie within the tolerance of its kind (the cell's ``tolerance``
metadata), figures are compared by their pixels, and stderr (progress bars) is not compared.
"""

from __future__ import annotations

try:
    from nbval.plugin import IPyNbCell
except ImportError:  # nbval not installed: nothing to adapt
    IPyNbCell = None

from infcore.reproduce import KINDS, Mismatch, compare_outputs


def _compare_with_tolerances(self, test, ref, skip_compare=None) -> bool:
    self.comparison_traceback = []
    try:
        numbers = compare_outputs(ref, test, self.cell.metadata.get("tolerance"),
                                  where=f"cell {self.cell_num}", sanitize=self.sanitize)
    except Mismatch as error:
        self.comparison_traceback.append(str(error))
        return False
    beyond = [n for n in numbers if not n.within]
    for n in beyond:
        self.comparison_traceback.append(
            f"{n.where}: {n.label} committed {n.ref!r}, now {n.new!r}, beyond the {n.kind!r} "
            f"tolerance ({KINDS[n.kind]})")
    return not beyond


if IPyNbCell is not None:
    IPyNbCell.compare_outputs = _compare_with_tolerances
