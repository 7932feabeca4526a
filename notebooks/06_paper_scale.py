# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The paper-scale run's record
#
# Pages 2, 4, 5, 7 and 8 open with one run of the `paper` profile, which follows the paper's
# protocol {cite:p}`karthikeyan2022revisiting` as far as our offline data allows: 800 training and
# 200 test images of the digits 0 and 1 (the paper: 1,000 and 200), four seeds for Table 1 as in
# the paper and four batch sizes (16 to 128; the paper does not list its own), two sets of 20
# models for Table 2, and 20 poisoned models for Figure 3; pages 7 and 8 add our own studies at
# the same scale. It was produced with
#
# ```
# python -m infcore.runbook --profile paper --results results/paper -p backend loky
# ```
#
# which executes every page with the paper profile and saves the tables behind each number as CSV
# files in `results/paper/`, with the parameters and the time of every page in `run.json`
# (`-p backend loky` sends the scores of pages 2, 4, 5 and 8 to one-thread worker processes). A
# page whose protocol changed later can be executed again on its own (`--only PAGE --overwrite`),
# replacing its tables and its entry in the record; the notes below say which pages were. This
# page shows that record: where each page ran and how long it took.

# %% tags=["parameters"]
results_path = "results/paper"

# %% tags=["hide-input"]
import textwrap

import pandas as pd
from IPython.display import display
from myst_nb import glue

from infcore import results, validation

validation.check_page("06_paper_scale", globals())

# %%
run = results.load_run(results.find(results_path))
pages = {name: entry for name, entry in run["notebooks"].items() if name in validation.PAGES}
machines = {name: machine for name, machine in results.page_machines(run).items() if name in pages}
described = {name: results.describe_machine(machine) for name, machine in machines.items()}
several = len(set(described.values())) > 1  # a run resumed, or pages re-run, on another machine
glue("where", "on the machines of the table's last column" if several
     else f"on a machine with {next(iter(described.values()))}", display=False)
glue("total", results.duration(results.run_seconds(results.find(results_path))), display=False)
table = pd.DataFrame([{"page": name, "minutes": round(entry["seconds"] / 60, 1),
                       "note": "see below" if "note" in entry else ""}
                      for name, entry in pages.items()]).set_index("page")
if several:
    table["machine"] = pd.Series({name: results.describe_machine(machine, brief=True)
                                  for name, machine in machines.items()})
display(table)

# %% [markdown]
# The run took the times above, {glue:text}`total` in all, {glue:text}`where`, computing on the
# CPU. A page's time depends on its machine, even between two CPUs of the same name: torch picks
# its kernels by what the CPU supports (AVX2 or AVX-512), and the README's time table says how much
# that changed the time of a leave-one-out matrix on the machines we measured.
# Everything it computes is cached, so an interrupted run resumes where it stopped; a page that
# resumed from a cache filled by an earlier, interrupted run shows only the time of its last part.
# The notes of the record say how:

# %%
for name, entry in run["notebooks"].items():
    if "note" in entry:  # a page executed twice is recorded as NAME_rerun
        page = name.replace("_rerun", " (executed again)")
        print(textwrap.fill(f"{page}: {entry['note']}", 92), end="\n\n")
