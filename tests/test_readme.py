"""The README's library example runs and gives what it says."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    exec(blocks[0], namespace)  # noqa: S102 - our own README
    assert namespace["scores"].shape == (50, 200)
