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
# # Why our Table 1 differs from the paper's
#
# The paper's headline result is that leave-one-out, often treated as the reference every other
# method should approximate, and influence functions are the two least stable methods: between two
# initialisations their scores correlate at 0.043 and 0.023 (Pearson, MNIST)
# {cite:p}`karthikeyan2022revisiting`. Our paper-scale run of {doc}`02_instability` finds both far
# more stable. The paper states part of its protocol: to vary the initialisation it fixes every
# other hyperparameter, "including the order in which the training data is seen", and each
# leave-one-out retraining keeps the hyperparameters and the initialisation of the full run. It
# does not state other choices a leave-one-out or an influence-function computation has to make:
# the order of the n-1 remaining examples in each retraining, how long to train, the damping, the
# precision of the loss differences. So the gap could mean that the claim does not hold, or that
# it holds under one of these unstated choices.
#
# This page tests each candidate cause in turn. A candidate is one change to our computation,
# with everything else left as it was, measured with Table 1's metrics between the same
# initialisations as page 2. Its verdict is computed: a change **moves the number to the
# paper's** when the Pearson correlation with the change lies at least halfway from our value to
# the paper's, and **does not** otherwise. On the paper's own values this rule says "moves" and
# on ours "does not", as it should (`tests/test_causes.py`).
#
# The page opens with the paper-scale study, read back from the tables it saved in
# `results/paper/`, and then runs every candidate live at the scale of the book's profile.

# %% tags=["parameters"]
profile = "quick"
n_train = 100
n_test = 20
data_seed = 0
seeds = [0, 1, 2]
epochs = 5
lr = 0.1
weight_decay = 0.001
long_epochs = [10]  # the convergence candidate: longer trainings
long_loo_seeds = [2]  # leave-one-out at each of long_epochs uses this many of the seeds (0: none)
variant_seeds = 3  # how many of the seeds the leave-one-out variants of candidates 1-3 use
noise_chunk = 48  # retrainings batched together for the noise floor (ours: 64)
dampings = ["critical*1.01", "critical*1.1", "auto", "auto*1.1", 0.001, 0.01, 0.1, 1.0]
joint_orders = ["redrawn", "fresh", "kept"]  # order variants also run with one seed for init and order
target_columns = 32  # training examples scored by warm-start leave-one-out and the PBRF
target_steps = 10
loo_columns = None  # leave-one-out variants score this many training examples drawn at random (None: all)
device = "cpu"
chunk_size = 64
results_dir = None
paper_results = "results/paper"  # the paper-scale run shown first

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from infcore import causes, experiments, paper, plots, results, validation
from infcore.training import TrainConfig

validation.check_page("07_why_they_differ", globals())
pd.set_option("display.max_colwidth", None)
LOO, IF = causes.LOO, causes.IF
TABLES = ["causes_rows", "causes_damping", "causes_epochs", "causes_targets", "causes_curvature",
          "causes_orders", "causes_timings"]
base = TrainConfig(epochs=epochs, lr=lr, weight_decay=weight_decay, init_seed=seeds[0],
                   order_seed=seeds[0])
configs = causes.seed_configs(base, seeds)
variant_configs = configs[:variant_seeds]  # each is one leave-one-out matrix per variant
loo_cols = causes.draw_columns(n_train, loo_columns)  # None: every training example
live_label = results.scale_label(f"{profile} run", globals())
glue("live_label", live_label, display=False)
glue("paper_loo", causes.PAPER[LOO]["pearson"], display=False)
glue("paper_if", causes.PAPER[IF]["pearson"], display=False)

# %% [markdown]
# ## At the paper's scale
#
# The study below ({glue:text}`paper_label`) was run with
# `python -m infcore.runbook --profile paper --only 07_why_they_differ --results DIR`, on the same
# 800 / 200 MNIST images, network, seeds and cached models as page 2, whose leave-one-out and
# influence-function scores it reuses as the baseline. `LOO` and `IF` are Pearson correlations
# averaged over test examples and over pairs of runs; a blank means the change does not apply to
# that method. Each leave-one-out variant costs one retraining per scored training example and
# seed, so at this scale the variants of candidates 1 to 3 use the first
# {glue:text}`s_variant_seeds` seeds and leave-one-out after the longest training the first
# {glue:text}`s_long_seeds`; the one-seed protocol of candidate 2 uses all of them (the live
# tables below give each number's `n_pairs`, the pairs of seeds it averages). Every
# leave-one-out number of this study, the baseline's included, is taken over
# {glue:text}`s_loo_columns` (`loo_columns`), so each variant costs that share of a full
# leave-one-out matrix and every comparison is over the same examples. A Pearson correlation over
# a subset is a number of its own, not an estimate of the one over all examples: a few large
# scores carry much of each row's variance, so a subset that misses them correlates less, and
# another draw of the subset gives another value. Page 2's Table 1 cell is over all examples;
# the Spearman correlation depends little on the draw.

# %% tolerance="correlation"
try:
    at_scale = results.load_section(paper_results, "07_why_they_differ", TABLES, "paper-scale run")
except FileNotFoundError as error:  # the paper-scale run itself, before its tables exist
    at_scale = None
    print(f"no paper-scale study to show: {error}")
if at_scale is not None:
    scale = at_scale.tables
    scale_summary = causes.summary(scale["causes_rows"])
    glue("paper_label", at_scale.label, display=False)
    glue("s_variant_seeds", at_scale.parameters["variant_seeds"], display=False)
    glue("s_long_seeds", at_scale.parameters["long_loo_seeds"][-1], display=False)
    scale_columns = at_scale.parameters.get("loo_columns")  # runs before it scored every example
    glue("s_loo_columns", f"all {at_scale.parameters['n_train']} training examples"
         if scale_columns is None else f"the same {scale_columns} of the "
         f"{at_scale.parameters['n_train']} training examples, drawn at random once", display=False)
    display(scale_summary.round(3))

# %% [markdown]
# What the evidence says, candidate by candidate (the numbers are the paper-scale run's; "moves"
# means past the halfway threshold):

# %% tolerance="correlation"
if at_scale is not None:
    display(Markdown(causes.closing_note(scale_summary)))
    base_rows = scale["causes_rows"].query("cause == 'baseline'").set_index("method").pearson

# %% [markdown]
# ### What the evidence says
#
# **Numerical precision is not the cause.** Between initialisations, leave-one-out correlates at
# {glue:text}`s_f32:.3f` when its loss differences are taken in float32 and at
# {glue:text}`s_f64:.3f` in float64, from the same retrainings. It agrees with a copy of itself
# whose retrainings were only batched otherwise at {glue:text}`s_noise:.3f`. (The float64 value
# is our baseline on the one pair of seeds these variants use; over all six pairs it is
# {glue:text}`s_base_loo:.3f`.) Rounding alone would thus leave two computations agreeing almost
# perfectly, far above our value between initialisations: numerical noise explains neither our
# number nor the paper's.
#
# **The order of the remaining examples is.** Retrained in another order, the scores of one and
# the same model agree with ours at only {glue:text}`s_redrawn_same:.3f` (re-drawn order) and
# {glue:text}`s_fresh_same:.3f` (a fresh order). Removing one training image changes a test loss
# far less than visiting the others in another order does: the median score magnitude is
# {glue:text}`s_kept_median:.2g` with our kept order against {glue:text}`s_redrawn_median:.2g`
# (re-drawn) and {glue:text}`s_fresh_median:.2g` (fresh), so such scores mostly measure the
# order. Whether two initialisations then agree depends on whether their orders are
# related. Under page 2's protocol, the same order seed for every initialisation, they are, and
# the scores agree at {glue:text}`s_redrawn:.3f` (re-drawn) and {glue:text}`s_fresh:.3f` (fresh).
# With one seed for the initialisation and the order, as a script gets that calls
# `torch.manual_seed(seed)` and shuffles with a `DataLoader`, they are not: leave-one-out then
# correlates at {glue:text}`s_redrawn_joint:.3f` (re-drawn) and {glue:text}`s_fresh_joint:.3f`
# (fresh) between initialisations, against the paper's {glue:text}`paper_loo:.3f`.
#
# **Much longer training {glue:text}`s_e50_headline`**: leave-one-out correlates at
# {glue:text}`s_e20_loo:.3f` after 20 epochs ({glue:text}`s_e20_pairs` pairs of seeds) and at
# {glue:text}`s_e50_loo:.3f` after 50 ({glue:text}`s_e50_pairs`), against the threshold of
# {glue:text}`s_loo_half:.3f`, while the training objective barely changes between 20 and 50
# epochs. The two other targets, warm-start
# leave-one-out and the PBRF, are more stable than any leave-one-out variant on this page
# ({glue:text}`s_warm:.3f` and {glue:text}`s_pbrf:.3f` between
# initialisations; ours, on the same training examples: {glue:text}`s_cols:.3f`). They agree with
# influence functions ({glue:text}`s_warm_if:.3f` and {glue:text}`s_pbrf_if:.3f`, exact Hessian)
# far better than leave-one-out from scratch does ({glue:text}`s_loo_if:.3f`), and hardly with
# leave-one-out itself ({glue:text}`s_warm_loo:.3f` and {glue:text}`s_pbrf_loo:.3f`). At this
# scale that fits the argument of {cite:t}`bae2022influence`, that influence functions
# approximate the response of the trained network rather than a retraining from scratch. Both
# are ten gradient steps from the trained weights, close to a first-order response, and the live
# run below, on far less trained models, does not show the same pattern.
#
# **No candidate reproduces the paper's influence-function number.** Our damping, "auto", is minus
# the smallest eigenvalue of each model's Hessian (the critical damping) plus 0.01, an absolute
# margin: here {glue:text}`s_auto_ratio_low:.2f` to {glue:text}`s_auto_ratio_high:.2f` times the
# critical value. The least stable point of our grid, which goes down to 1.01 times the critical
# value, is that lowest one: influence functions correlate at
# {glue:text}`s_crit:.3f` between initialisations (the verdict threshold is
# {glue:text}`s_if_half:.3f`), and there a 10% larger damping gives scores that correlate at
# {glue:text}`s_crit_sens:.3f` with the first, the paper's "small change of damping" effect, where
# our automatic damping keeps {glue:text}`s_auto_sens:.3f`. Longer training
# ({glue:text}`s_e20_if:.3f` after 20 epochs, {glue:text}`s_e50_if:.3f` after 50) and the
# Gauss-Newton matrix ({glue:text}`s_ggn:.3f`) do not move it either, and with our damping the
# weight-decay term cancels exactly.
#
# In short, our leave-one-out falls to the paper's value only when one seed sets both the
# initialisation and every order, the full runs' included ({glue:text}`s_redrawn_joint:.3f` and
# {glue:text}`s_fresh_joint:.3f` against {glue:text}`paper_loo:.3f`). That is not the protocol
# the paper describes for Table 1, which fixes the order while the initialisation varies; under
# that protocol no order variant comes near ({glue:text}`s_redrawn:.3f` and
# {glue:text}`s_fresh:.3f`). The paper's own Table 2 sits badly with it too: its baseline pairs
# differ in both initialisation and order, yet their leave-one-out scores correlate at
# {glue:text}`paper_t2_loo:.3f` (MNIST), more than Table 1's pairs that differ in the
# initialisation alone. So this is one protocol that reproduces the number, not evidence that the
# paper used it; under it, leave-one-out mostly measures the order each retraining drew.
# {glue:text}`s_e50_summary` The
# paper's influence-function number is reproduced by none of the candidates tested here, on a
# damping grid that stops at 1.01 times the critical value.

# %% tags=["remove-cell"]
if at_scale is not None:
    rows7 = scale["causes_rows"]
    damping7 = scale["causes_damping"].set_index("damping")
    epochs7 = scale["causes_epochs"].set_index(["epochs", "method"])
    pairs7 = epochs7.n_pairs
    epochs7 = epochs7.pearson
    targets7 = scale["causes_targets"].set_index(["target", "compared with"]).pearson
    numbers = {
        "s_f32": causes.value(rows7, "1. loss precision", "float32"),
        "s_f64": causes.value(rows7, "1. loss precision", "float64"),
        "s_noise": causes.value(rows7, "3. noise floor", "same seeds", measured="agreement with itself"),
        "s_redrawn_same": causes.value(rows7, "2. order of the rest", "order re-drawn",
                                       measured="agreement with ours, same model"),
        "s_fresh_same": causes.value(rows7, "2. order of the rest", "a fresh order",
                                     measured="agreement with ours, same model"),
        "s_redrawn": causes.value(rows7, "2. order of the rest", "order re-drawn over n-1 (DataLoader)"),
        "s_fresh": causes.value(rows7, "2. order of the rest", "a fresh order per retraining"),
        "s_redrawn_joint": causes.value(rows7, "2. order of the rest",
                                        "order re-drawn over n-1 (DataLoader), one seed"),
        "s_fresh_joint": causes.value(rows7, "2. order of the rest",
                                      "a fresh order per retraining, one seed"),
        "s_e20_loo": float(epochs7[(20, LOO)]), "s_e20_if": float(epochs7[(20, IF)]),
        "s_e50_if": float(epochs7[(50, IF)]),
        "s_e50_loo": float(epochs7.get((50, LOO), float("nan"))),
        "s_e20_pairs": int(pairs7[(20, LOO)]), "s_e50_pairs": int(pairs7.get((50, LOO), 0)),
        "s_warm": causes.value(rows7, "5. other targets", "warm-start", method="warm_start"),
        "s_pbrf": causes.value(rows7, "5. other targets", "PBRF", method="pbrf"),
        "s_cols": causes.value(rows7, "5. other targets", "ours"),
        "s_crit": float(damping7.stability_pearson["critical*1.01"]),
        "s_crit_sens": float(damping7.sensitivity_pearson["critical*1.01"]),
        "s_auto_sens": float(damping7.sensitivity_pearson["auto"]),
        "s_if_half": causes.halfway(float(base_rows[IF]), causes.PAPER[IF]["pearson"]),
        "s_ggn": causes.value(rows7, "7. curvature", "gauss-newton with", method=IF),
        "s_base_loo": float(base_rows[LOO]),
        "paper_t2_loo": float(paper.table2().query(
            "setting == 'baseline' and method == @LOO and dataset == 'mnist' and metric == 'pearson'")
            .value.iloc[0]),
    }
    orders7 = scale["causes_orders"].set_index("order")
    for order in ("kept", "redrawn", "fresh"):
        numbers[f"s_{order}_median"] = float(orders7.median_abs_score[order])
    numbers["s_redrawn_trend"] = float(orders7.correlation_with_index["redrawn"])
    # "auto" against the critical damping: the lowest and highest over models (critical*1.01 / 1.01)
    ratios = [float(damping7[f"damping_{end}"]["auto"] / (damping7[f"damping_{end}"]["critical*1.01"] / 1.01))
              for end in ("low", "high")]
    numbers["s_auto_ratio_low"], numbers["s_auto_ratio_high"] = min(ratios), max(ratios)
    for name, target in (("warm", "warm-start"), ("pbrf", "PBRF")):
        row = [t for t in targets7.index if t[0].startswith(target)]
        numbers[f"s_{name}_if"] = float(targets7[[t for t in row if t[1] == "IF, Hessian"][0]])
        numbers[f"s_{name}_loo"] = float(targets7[[t for t in row
                                                   if t[1] == "leave-one-out (ours)"][0]])
    numbers["s_loo_if"] = float(targets7[("leave-one-out (ours)", "IF, Hessian")])
    for name, number in numbers.items():
        glue(name, number, display=False)
    # The prose above words what the paper-scale run found; a run that finds otherwise must
    # reword it.
    loo_half = causes.halfway(float(base_rows[LOO]), causes.PAPER[LOO]["pearson"])
    # the longest training is worded from its numbers: one pair of seeds passed the threshold
    # in an earlier run, six pairs over a subset of the examples did not
    e50_moves = numbers["s_e50_loo"] <= loo_half
    glue("s_loo_half", loo_half, display=False)
    glue("s_e50_headline", "passes the halfway threshold" if e50_moves
         else "does not reach the halfway threshold", display=False)
    glue("s_e50_summary", "Much longer training brings leave-one-out past the halfway threshold "
         "as well." if e50_moves else "Much longer training does not bring leave-one-out near "
         "the paper's value.", display=False)
    if_verdicts = scale_summary.verdict.str.contains("IF: " + causes.MOVES, regex=False)
    prose = {
        "float32 changes leave-one-out's stability by < 0.05":
            abs(numbers["s_f32"] - numbers["s_f64"]) < 0.05,
        "the noise floor is far above our value": numbers["s_noise"] > 0.99,
        "another order: the same model's scores agree little with ours":
            max(numbers["s_redrawn_same"], numbers["s_fresh_same"]) < 0.3,
        "same order seed: the variants do not move": min(numbers["s_redrawn"], numbers["s_fresh"]) > loo_half,
        "one seed: both variants move": max(numbers["s_redrawn_joint"], numbers["s_fresh_joint"]) <= loo_half,
        "20 epochs does not move leave-one-out": numbers["s_e20_loo"] > loo_half,
        "warm start and PBRF do not move": min(numbers["s_warm"], numbers["s_pbrf"]) > loo_half,
        "no influence-function change moves": not if_verdicts.any(),
        "damping near the critical value is the least stable point":
            numbers["s_crit"] < float(base_rows[IF]) and numbers["s_crit_sens"] < numbers["s_auto_sens"],
        "both targets agree with IF better than leave-one-out does":
            min(numbers["s_warm_if"], numbers["s_pbrf_if"]) > numbers["s_loo_if"],
        "both targets hardly agree with leave-one-out":
            max(numbers["s_warm_loo"], numbers["s_pbrf_loo"]) < 0.3,
        "both targets are more stable than every leave-one-out variant":
            min(numbers["s_warm"], numbers["s_pbrf"]) > rows7[
                (rows7.method == LOO) & (rows7.measured == causes.BETWEEN)].pearson.max(),
        "the paper's Table 2 LOO is above its Table 1 LOO": numbers["paper_t2_loo"] > causes.PAPER[LOO]["pearson"],
        "kept-order scores are the smallest by far":
            numbers["s_kept_median"] * 10 < min(numbers["s_redrawn_median"], numbers["s_fresh_median"]),
    }
    wrong = [text for text, holds in prose.items() if not holds]
    assert not wrong, f"the prose of this page does not describe these results: {wrong}"

# %% [markdown]
# The details behind each row, and what each figure shows, follow in the live part of the page,
# which runs the same functions at the book's profile. The three figures of the paper-scale study:
#
# ```{glue:figure} fig_scale_damping
# :name: fig-scale-damping
#
# Influence functions along the damping ({glue:text}`paper_label`): stability between
# initialisations, agreement with leave-one-out of the same model, and agreement with the scores
# at a 10% larger damping, against the damping (mean over models of the value each point took;
# points below the smallest damping that works are left out). The dashed line is the paper's value
# between initialisations, the dotted one the verdict threshold.
# ```

# %% tags=["remove-input"]
if at_scale is not None:
    fig = plots.damping_curve(scale["causes_damping"], causes.PAPER[IF]["pearson"],
                              float(base_rows[IF]), title=at_scale.label)
    glue("fig_scale_damping", fig, display=False)
    plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_scale_epochs
# :name: fig-scale-epochs
#
# Stability between initialisations against the length of training ({glue:text}`paper_label`);
# crosses are the paper's values, the dotted grey line the training objective.
# ```

# %% tags=["remove-input"]
if at_scale is not None:
    fig = plots.epochs_curve(scale["causes_epochs"], {m: causes.PAPER[m]["pearson"] for m in (LOO, IF)},
                             title=at_scale.label)
    glue("fig_scale_epochs", fig, display=False)
    plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_scale_noise
# :name: fig-scale-noise
#
# Leave-one-out against its own noise floor ({glue:text}`paper_label`): its agreement with itself
# when only the float32 rounding differs (green), beside its agreement between initialisations
# (blue); the dashed line is the paper's value.
# ```

# %% tags=["remove-input"]
if at_scale is not None:
    fig = plots.noise_floor(causes.loo_bars(scale["causes_rows"]), causes.PAPER[LOO]["pearson"],
                            title=at_scale.label)
    glue("fig_scale_noise", fig, display=False)
    plt.close(fig)

# %% [markdown]
# What each part of the study cost at this scale, in seconds with the threads that
# `results/paper/run.json` records (`seconds_this_run` is this page's wall-clock, short where the
# cache already held the work; `seconds_recorded` is the compute when a variant was first
# computed, kept with it in the cache; the baseline and the longer trainings reuse entries of
# page 2's sweep):

# %% tags=["hide-output"]
if at_scale is not None:
    display(scale["causes_timings"].round(1))

# %% [markdown]
# ## Each candidate, live at the book's profile
#
# The live run is the {glue:text}`live_label`. Every score matrix is cached under a key that holds
# every value that affects it, and the baseline is the very cache entry of page 2's
# initialisation row, so nothing is computed twice. With `loo_columns` set (the paper profile
# sets 200), every leave-one-out number below is over that many training examples, drawn once.

# %% tags=["remove-stderr"]
task = experiments.Task(dataset="mnist", n_train=n_train, n_test=n_test, seed=data_seed)
# the progress bars of long sweeps go to stderr: shown by the runbook, hidden in the book
experiment = experiments.Experiment(task, device=device, chunk_size=chunk_size)
timings, parts = {}, []
with causes.timed(timings, "baseline, and the matrices of 6 and 7"):
    # every influence-function variant of the page at once: one Hessian per model
    causes.influence_scores(experiment, configs, causes.page_variants(dampings))
    parts.append(causes.baseline_rows(experiment, configs, loo_cols))

# %% tolerance="correlation"
display(parts[0][["method", "pearson", "spearman", "top_overlap", "n_pairs"]].round(3))

# %% [markdown]
# ### 1. Loss precision, and 3. the noise floor
#
# A leave-one-out score is a difference of two test losses of nearly equal networks. We evaluate
# them in float64; evaluated in float32, as a plain implementation would, losses near zero move in
# steps of about $1.2 \times 10^{-7}$. The same retrainings give both. Retraining with another
# batching of the retrainings (chunks of {glue:text}`noise_chunk` instead of 64) sums in another
# order, as a GPU's non-deterministic kernels would: the agreement of leave-one-out with this copy
# of itself is the most that two computations of it can agree, the ceiling that
# {cite:t}`nguyen2023bayesian` frame as a signal-to-noise ratio.

# %% tags=["remove-stderr"] tolerance="correlation"
glue("noise_chunk", noise_chunk, display=False)
with causes.timed(timings, "1. loss precision"):  # also the noise floor: the same retrainings
    parts.append(causes.precision_and_noise_rows(experiment, variant_configs, noise_chunk, loo_cols))
display(parts[-1].drop(columns=["cause", "seconds"]).round(3))

# %% [markdown]
# ### 2. The order of the remaining examples
#
# Our retraining keeps the full run's order with the left-out example deleted. A `DataLoader`
# with `shuffle=True` over the remaining examples draws another permutation of the n-1 positions,
# unrelated to the full run's (the same seed gives another order for another length); a fresh
# order per retraining is the other extreme. Under the same order seed for every initialisation
# these variants are compared between initialisations, and also against our leave-one-out of the
# same model. A plain implementation that calls `torch.manual_seed(seed)` once sets the
# initialisation and the shuffling together, so a change of initialisation then also changes every
# order: the rows "one seed for init and order" measure that protocol. Of these, the fresh order
# is what a script gets that seeds once, reloads the initial weights for each retraining and lets
# the `DataLoader` draw on; the re-drawn order is what it gets when it re-seeds before each
# retraining; the kept order with one seed changes the full runs' order with the initialisation.

# %% tags=["remove-stderr"] tolerance={"default": "correlation", "top_overlap": "percent"}
with causes.timed(timings, "2. order of the rest"):
    parts.append(causes.order_rows(experiment, variant_configs, joint_orders, configs, loo_cols))
    order_table = causes.order_diagnostics(experiment, variant_configs, loo_cols)
display(parts[-1].drop(columns=["cause", "seconds"]).round(3))

# %% [markdown]
# What the re-drawn scores measure: a `DataLoader` re-seeded with the same seed for every
# retraining draws the same permutation of the n-1 positions each time, so the retraining without
# example $i$ sees every later example one position earlier: its order drifts smoothly with $i$.
# Scores that tracked this drift would correlate with $i$; the table gives the mean correlation of
# a row of scores with $i$ (at the paper's scale {glue:text}`s_redrawn_trend:.2f` for the
# re-drawn order), and the median magnitude of a score, a difference of test losses:

# %% tolerance="correlation"
display(order_table)

# %% [markdown]
# ### 4. Convergence
#
# Five epochs may stop short of a minimum, and influence functions assume one. The same runs
# trained longer ({glue:text}`long_epochs`), with the training objective and the test accuracy of
# the models; leave-one-out at the longest training uses fewer seeds, because it costs as much per
# epoch as the training itself times the number of examples.

# %% tags=["remove-stderr"] tolerance={"default": "correlation", "top_overlap": "percent"}
glue("long_epochs", ", ".join(str(e) for e in long_epochs) + " epochs", display=False)
with causes.timed(timings, "4. convergence"):
    rows, epochs_table = causes.convergence(experiment, base, seeds, long_epochs, long_loo_seeds,
                                            loo_cols)
parts.append(rows)
display(epochs_table.drop(columns=["spearman"]).round(4))
short = epochs_table[epochs_table.epochs == epochs].iloc[0]
glue("epochs", epochs, display=False)
glue("live_objective", float(short.train_objective), display=False)
glue("live_accuracy", float(short.test_accuracy), display=False)
if at_scale is not None:
    scale_short = scale["causes_epochs"].query("epochs == @epochs").iloc[0]
    glue("scale_objective", float(scale_short.train_objective), display=False)

# %% [markdown]
# At this profile, {glue:text}`epochs` epochs leave the training objective at
# {glue:text}`live_objective:.3f` (test accuracy {glue:text}`live_accuracy:.2f`), far from a
# minimum; at the paper's scale it is {glue:text}`scale_objective:.3f`. The live numbers of this
# page therefore test the code and show what each candidate measures; the evidence is the
# paper-scale study above.

# %% [markdown]
# ### 5. Other targets: warm-start leave-one-out and the PBRF
#
# {cite:t}`koh2017understanding` compared influence functions with retraining that starts from
# the trained weights, not from the initialisation; {cite:t}`bae2022influence` show that
# influence functions of a network approximate neither, but the proximal Bregman response
# function (PBRF): the response of the trained network to down-weighting one example, with its
# outputs kept close to the trained ones and its weights close to the trained weights. Both are
# computed here with {glue:text}`target_steps` steps of full-batch gradient descent from the
# trained weights (learning rate as in training), on {glue:text}`target_columns` training
# examples drawn at random; every number of this candidate, ours included, is over those columns.

# %% tags=["remove-stderr"] tolerance="correlation"
glue("target_steps", target_steps, display=False)
glue("target_columns", target_columns, display=False)
with causes.timed(timings, "5. other targets"):
    rows, targets_table = causes.target_rows(experiment, configs, n_columns=target_columns,
                                             steps=target_steps, lr=lr)
parts.append(rows)
display(rows.drop(columns=["cause", "seconds"]).round(3))
display(targets_table.round(3))

# %% [markdown]
# ### 6. Damping
#
# The trained network's Hessian is indefinite, so influence functions need a damping above minus
# its smallest eigenvalue ("critical" below). The sweep goes from just above it to large values;
# absolute dampings below the critical value of some model are not allowed and left blank. At each
# point: the stability between initialisations, the agreement with leave-one-out of the same
# model, and the agreement with the scores at a 10% larger damping, the paper's "a small change of
# damping changes the scores a lot".

# %% tags=["remove-stderr"] tolerance={"default": "correlation", "damping_low": "magnitude", "damping_high": "magnitude", "stability_top_overlap": "percent", "with_loo_top_overlap": "percent", "sensitivity_top_overlap": "percent"}
with causes.timed(timings, "6. damping"):
    damping_table, damping_seconds = causes.damping_curve(experiment, configs, dampings)
parts.append(causes.damping_rows(damping_table))
display(damping_table[["damping", "damping_low", "damping_high", "allowed", "stability_pearson",
                       "with_loo_pearson", "sensitivity_pearson"]].round(4))

# %% [markdown]
# ```{glue:figure} fig_damping
# :name: fig-damping
#
# The damping sweep of this run ({glue:text}`live_label`), drawn as the paper-scale one.
# ```

# %% tags=["remove-input"]
fig = plots.damping_curve(damping_table, causes.PAPER[IF]["pearson"],
                          float(parts[0].set_index("method").pearson[IF]), title=live_label)
glue("fig_damping", fig, display=False)
plt.close(fig)

# %% [markdown]
# ### 7. Curvature
#
# The exact Hessian against the Gauss-Newton matrix, which leaves out the network's own curvature
# and so is positive semi-definite {cite:p}`bae2022influence`, each with and without the
# weight-decay term, at damping "auto". With the Hessian, "auto" absorbs the weight-decay term
# exactly (it shifts every eigenvalue, the smallest included, by the same amount), so its two rows
# must agree.

# %% tags=["remove-stderr"] tolerance="correlation"
with causes.timed(timings, "7. curvature"):
    rows, curvature_table = causes.curvature_rows(experiment, configs)
parts.append(rows)
display(curvature_table.round(3))

# %% [markdown]
# ## All candidates of this run
#
# The table of the page's top, for the live run ({glue:text}`live_label`):

# %% tolerance="correlation"
all_rows = pd.concat(parts, ignore_index=True)
live_summary = causes.summary(all_rows)
display(live_summary.round(3))
display(Markdown(causes.closing_note(live_summary)))

# %% tags=["remove-cell"]
folder = results.destination(results_dir)  # results/quick in `make book`, or --results DIR
if folder is not None:
    results.save_tables(folder, {
        "causes_rows": all_rows, "causes_damping": damping_table, "causes_epochs": epochs_table,
        "causes_targets": targets_table, "causes_curvature": curvature_table,
        "causes_orders": order_table,
        "causes_timings": causes.timing_table(timings, all_rows, {"6. damping": damping_seconds})})
