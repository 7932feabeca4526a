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
# # Rethinking influence
#
# An influence score is usually read as a fact about two examples: this training example helped (or
# hurt) that test example by so much. The paper argues that this reading is too simple
# {cite:p}`karthikeyan2022revisiting`. What removing a training example does depends on which other
# examples stay behind, and, for a model trained by SGD, on the states that training happens to pass
# through. The same observations undermine two sanity checks proposed by
# {cite:t}`hanawa2021evaluation` for judging influence methods without a gold standard.
#
# This page makes each point with a problem small enough to see: points in the plane, separated by
# a logistic model with an L2 penalty. The penalty is weak (scikit-learn's `C` below), so the fit
# behaves much like a linear support vector machine: points near the boundary carry it, points far
# away hardly matter. The loss of a test point is its log-loss, $-\log P(y \mid x)$, and the
# influence of removing a set of training points is the test loss after refitting without them minus
# the test loss of the full fit, positive when the removed points were helping. Each claim below is
# followed by a check computed on the spot that prints whether it holds.

# %% tags=["parameters"]
seed = 0  # seed of the toys' cluster points
C = 10.0  # inverse L2 strength of the toys' logistic model (scikit-learn's C)
sgd_epochs = 5  # epochs of the SGD runs on the toy (batch size 1)
sgd_lr = 0.1  # learning rate of the SGD runs
orders = [0, 1]  # two data orders (order_seed) of the SGD runs
cnn_n_train = 200  # MNIST 0/1 training examples for the small CNN
cnn_n_copies = 50  # test examples that copy a training example
cnn_n_test = 50  # held-out test examples
top_k = 10  # size of the top set in the top-k tests

# %% tags=["hide-input"]
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue
from scipy.stats import pearsonr

# torch's forward-mode autodiff (used by the representer refit) loads its rules through the
# deprecated torch.jit.script; the warning says nothing about this page.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")

from infcore import heuristics, models, plots, toys, validation
from infcore.data import load_mnist
from infcore.methods import compute_scores, grad_dot, leave_one_out, tracin_cp, tracin_ideal
from infcore.training import TrainConfig, accuracy, epoch_order, test_loss, train


def check(claim: str, ok: bool) -> None:
    """Print whether a claim of the text holds for the numbers computed here."""
    print(f"{claim}: {'holds' if ok else 'does not hold'}")


validation.check_page("03_rethinking", globals())


# %% [markdown]
# ## Influence depends on the other examples
#
# {numref}`fig-near-duplicates` shows two clusters and, close to the boundary, two nearly identical
# points of each class (triangles). The pairs sit on the "wrong" side of the middle and tilt the
# boundary. Take the class-1 (green) pair and the green test point (star) next to it. Removing one
# triangle and refitting turns the boundary by only {glue:text}`nd_rot_one:.1f` degrees and raises
# the test loss by {glue:text}`nd_loss_one:.4f`; removing the other one instead gives
# {glue:text}`nd_rot_other:.1f` degrees and {glue:text}`nd_loss_other:.4f`. By leave-one-out (LOO),
# both triangles look nearly irrelevant. Removing both at once turns the boundary by
# {glue:text}`nd_rot_both:.1f` degrees and raises the test loss by {glue:text}`nd_loss_both:.3f`,
# {glue:text}`nd_ratio:.0f` times the sum of the two single effects.
#
# Each triangle covers for its twin: the evidence they carry is shared, so taking away either copy
# alone leaves it in place. The influence of a training example is therefore not a property of that
# example and the test example alone; it depends on what else is in the training set, even for this
# convex problem where the fit is unique. (The red pair behaves the same way by symmetry.)

# %%
near = toys.near_duplicates_toy(seed=seed)
pair = near.groups["pair_class1"]
singles = [toys.removal_effect(near, [i], C) for i in pair]
both = toys.removal_effect(near, pair, C)
target = 0  # the green test point next to the green pair
single_losses = [e.test_loss_change[target] for e in singles]
glue("nd_rot_one", float(abs(singles[0].rotation_deg)), display=False)
glue("nd_rot_other", float(abs(singles[1].rotation_deg)), display=False)
glue("nd_rot_both", float(abs(both.rotation_deg)), display=False)
glue("nd_loss_one", float(single_losses[0]), display=False)
glue("nd_loss_other", float(single_losses[1]), display=False)
glue("nd_loss_both", float(both.test_loss_change[target]), display=False)
glue("nd_ratio", float(both.test_loss_change[target] / sum(single_losses)), display=False)
for name, effect in [("one triangle", singles[0]), ("the other", singles[1]), ("both", both)]:
    print(f"without {name}: rotation {effect.rotation_deg:+.2f} deg, "
          f"test loss change {effect.test_loss_change[target]:+.4f}")
check("removing both triangles changes the test loss more than 10 times the two single removals",
      both.test_loss_change[target] > 10 * sum(single_losses))
check("removing both turns the boundary more than 5 times as far as removing either one",
      abs(both.rotation_deg) > 5 * max(abs(e.rotation_deg) for e in singles))

# %% [markdown]
# ```{glue:figure} fig_near_duplicates
# :name: fig-near-duplicates
#
# Figure 1 of the paper, as a computed toy: two clusters and a pair of near-duplicates of each class (triangles) near the boundary; stars are
# the test points. The boundary of the full fit (solid) barely moves when one green triangle is
# removed (dashed) but turns when both are (dotted).
# ```

# %%
fig = plots.toy_boundaries(near, [(
    "",
    {"all points": both.full, "without one green triangle": singles[0].without,
     "without both green triangles": both.without},
    [],
)], markers={"pair_class1": "^", "pair_class0": "^"})
glue("fig_near_duplicates", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## The identical-instance test names the wrong example
#
# The identical-instance test of {cite:t}`hanawa2021evaluation` copies a training example into the
# test set: when the model classifies the copy correctly, a good influence method should rank the
# original first. The toy of {numref}`fig-identical-instance` has a green training point (triangle)
# inside the green side and a test point that copies it. A second green point (plus) lies close to
# the red cluster and holds the boundary away from the green side.
#
# The copied point is already far from the boundary, so its own gradient is small: removing it
# changes its copy's loss by only {glue:text}`ii_self:.5f`. Removing the plus lets the boundary come
# closer to the copy and raises the copy's loss by {glue:text}`ii_support:.4f`. By LOO, the most
# helpful training example for the copy is the plus, not the original, so LOO itself fails the test:
# its pass rate on this toy is {glue:text}`ii_pass:.0f`. A point that fixes the boundary, like a
# support vector, can matter more for a test point than that point's own twin.

# %%
instance = toys.identical_instance_toy(seed=seed)
instance_loo = toys.toy_loo_scores(instance, C)
copied, support = instance.groups["copied"][0], instance.groups["support"][0]
instance_fit = toys.fit_boundary(instance.x_train, instance.y_train, C)
instance_correct = instance_fit.predict(instance.x_test) == instance.y_test
instance_test = heuristics.identical_instance_test(instance_loo, instance.copy_of, instance_correct)
glue("ii_self", float(instance_loo[0, copied]), display=False)
glue("ii_support", float(instance_loo[0, support]), display=False)
glue("ii_pass", float(instance_test.pass_rate), display=False)
print(f"copy classified correctly: {bool(instance_correct[0])}")
print(f"LOO on the copy: original {instance_loo[0, copied]:.6f}, "
      f"plus {instance_loo[0, support]:.6f}")
print(f"identical-instance test on LOO: pass rate {instance_test.pass_rate:.2f}")
check("LOO ranks the plus above the copied original, so the test fails",
      int(np.argmax(instance_loo[0])) == support and instance_test.pass_rate == 0.0)

# %% [markdown]
# ```{glue:figure} fig_identical_instance
# :name: fig-identical-instance
#
# Figure 2 of the paper, as a computed toy: the identical-instance test. (a) The fit on all points; the star is a test copy of the green
# triangle. (b) Without the green plus (hollow) the boundary (dashed) moves towards the copy, which
# changes its loss far more than removing the triangle itself would.
# ```

# %%
support_effect = toys.removal_effect(instance, [support], C)
fig = plots.toy_boundaries(instance, [
    ("(a) all points", {"all points": support_effect.full}, []),
    ("(b) without the plus",
     {"all points": support_effect.full, "without the plus": support_effect.without}, [support]),
], markers={"copied": "^", "support": "P"})
glue("fig_identical_instance", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## The identical-class test rules out contrastive evidence
#
# The identical-class test asks that the most influential training example of a test example
# belong to the class the model predicts for it. But a rule that separates two classes is learnt
# from both: in a one-versus-rest task, the examples of the class of interest also tell the model
# what the rest looks like. In {numref}`fig-identical-class` a single green point (square) sits at
# the bottom, on the red side of the middle. It tilts the boundary, and the tilt moves the boundary
# away from the red test point at the top. The model predicts red for that point, yet the most
# helpful training example by LOO is the green square ({glue:text}`ic_anchor:.3f`, against
# {glue:text}`ic_next:.3f` for the best red point). LOO fails the identical-class test here (pass
# rate {glue:text}`ic_pass:.0f`), and with it every top-k form of the test.

# %%
contrast = toys.identical_class_toy(seed=seed)
contrast_loo = toys.toy_loo_scores(contrast, C)
anchor = contrast.groups["anchor"][0]
contrast_fit = toys.fit_boundary(contrast.x_train, contrast.y_train, C)
predicted = contrast_fit.predict(contrast.x_test)
class_test = heuristics.identical_class_test(contrast_loo, contrast.y_train, predicted)
same_class = contrast.y_train == predicted[0]
glue("ic_anchor", float(contrast_loo[0, anchor]), display=False)
glue("ic_next", float(contrast_loo[0, same_class].max()), display=False)
glue("ic_pass", float(class_test.pass_rate), display=False)
print(f"predicted class of the test point: {predicted[0]}; class of the square: "
      f"{contrast.y_train[anchor]}")
print(f"LOO: square {contrast_loo[0, anchor]:.4f}, "
      f"best red point {contrast_loo[0, same_class].max():.4f}")
check("the most helpful training example by LOO belongs to the other class",
      int(np.argmax(contrast_loo[0])) == anchor and contrast.y_train[anchor] != predicted[0])

# %% [markdown]
# ```{glue:figure} fig_identical_class
# :name: fig-identical-class
#
# The identical-class toy: the green square at the bottom tilts the boundary (solid); without it
# (hollow square, dashed boundary) the boundary passes close to the red test point (star).
# ```

# %%
anchor_effect = toys.removal_effect(contrast, [anchor], C)
fig = plots.toy_boundaries(contrast, [(
    "",
    {"all points": anchor_effect.full, "without the square": anchor_effect.without},
    [anchor],
)], markers={"anchor": "s"})
glue("fig_identical_class", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## The two tests on a small CNN
#
# The same tests can be run on the methods of this book. We train the network of the other pages,
# {glue:text}`model`, on {glue:text}`cnn_n_train:d` MNIST zeros and ones (test accuracy
# {glue:text}`cnn_accuracy:.3f` on the held-out images; the paper's models: 0.95 to 1.0) and score {glue:text}`cnn_n_copies:d` test copies
# of training images together with {glue:text}`cnn_n_test:d` held-out images, by Grad-Dot, Grad-Cos,
# TracInCP and representer points ({numref}`fig-cnn-heuristics`). (Leave-one-out, influence
# functions and TracInIdeal are left out to keep this page fast.) As {cite:t}`hanawa2021evaluation`
# found, the cosine of gradients passes the identical-instance test on the correctly classified
# copies (pass rate {glue:text}`cnn_cos_instance:.2f`), while Grad-Dot's pass rate is
# {glue:text}`cnn_dot_instance:.2f`. Grad-Dot favours training images with large gradients, the
# ones the model fits badly: its first choices for the copies are only
# {glue:text}`cnn_dot_unique:d` distinct images, whose mean training loss is
# {glue:text}`cnn_dot_pick_loss:.3f` against {glue:text}`cnn_original_loss:.3f` for the copied
# originals. The toys above show why failing the test does not by itself make a method wrong: the
# gold standard, LOO, can fail the same test.

# %%
cnn_train, held_out = load_mnist(n_train=cnn_n_train, n_test=cnn_n_test, seed=seed)
cnn_test, copy_of = heuristics.copies_and_held_out(cnn_train, held_out, cnn_n_copies)
cnn = train(TrainConfig(init_seed=seed, order_seed=seed), cnn_train)
cnn_predicted = heuristics.predicted_classes(cnn, cnn_test)
cnn_scores = {name: compute_scores(name, cnn, cnn_train, cnn_test)
              for name in ["grad_dot", "grad_cos", "tracin_cp", "representer"]}

# %% tolerance="correlation"
glue("model", models.describe(), display=False)
glue("cnn_accuracy", accuracy(cnn, held_out), display=False)
table = heuristics.heuristic_table(
    cnn_scores, copy_of=copy_of, correct=cnn_predicted == cnn_test.y.numpy(),
    train_labels=cnn_train.y.numpy(), predicted=cnn_predicted, k=top_k,
)
glue("cnn_n_train", cnn_n_train, display=False)
glue("cnn_n_copies", cnn_n_copies, display=False)
glue("cnn_n_test", cnn_n_test, display=False)
glue("cnn_cos_instance", float(table.loc["grad_cos", "identical instance"]), display=False)
glue("cnn_dot_instance", float(table.loc["grad_dot", "identical instance"]), display=False)
print(table.round(3).to_string())
check("Grad-Cos passes the identical-instance test more often than Grad-Dot",
      table.loc["grad_cos", "identical instance"] > table.loc["grad_dot", "identical instance"])

# %% tolerance="magnitude"
train_loss = test_loss(cnn, cnn_train).numpy()  # loss of every training image
dot_picks = heuristics.top_k_training_examples(cnn_scores["grad_dot"][:cnn_n_copies], 1)[:, 0]
glue("cnn_dot_unique", len(np.unique(dot_picks)), display=False)
glue("cnn_dot_pick_loss", float(train_loss[dot_picks].mean()), display=False)
glue("cnn_original_loss", float(train_loss[:cnn_n_copies].mean()), display=False)
print(f"Grad-Dot's first choices for the copies: {len(np.unique(dot_picks))} distinct images, "
      f"mean loss {train_loss[dot_picks].mean():.4f}; "
      f"originals {train_loss[:cnn_n_copies].mean():.4f}")
check("Grad-Dot's first choices for the copies have a higher mean loss than the originals",
      train_loss[dot_picks].mean() > train_loss[:cnn_n_copies].mean())

# %% [markdown]
# ```{glue:figure} fig_cnn_heuristics
# :name: fig-cnn-heuristics
#
# Pass rates of the identical-instance and identical-class tests and their top-k forms for four
# methods on the small CNN (MNIST 0 vs 1). The instance tests count only the correctly classified
# copies of training images; the class tests count every test image.
# ```

# %%
fig = plots.heuristic_pass_rates(table, k=top_k)
glue("fig_cnn_heuristics", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## Influence depends on the states of training
#
# The toys so far were convex and refitted to the optimum. A network trained by SGD is not: what an
# example does to a test loss also depends on the state of the model when the example is used. To
# see this without a network, we train a logistic regression by SGD with batch size 1 on the points
# of {numref}`fig-near-duplicates` ({glue:text}`sgd_epochs:d` epochs, learning rate
# {glue:text}`sgd_lr:.2f`), once for each of two data orders, from the same initial weights.
#
# TracInIdeal {cite:p}`pruthi2020estimating` credits every SGD step's change of the test loss to the
# example of that step. With data order {glue:text}`order_a:d`, the two green triangles receive
# credits of {glue:text}`ideal_a0:.3f` and {glue:text}`ideal_a1:.3f` on the green test point; with
# order {glue:text}`order_b:d` they receive {glue:text}`ideal_b0:.3f` and {glue:text}`ideal_b1:.3f`.
# Which twin gets more depends on the order: in both runs it is the one visited first in the first
# epoch, when the test loss still had most room to fall. Over all training examples, the credits of
# the two runs correlate at only {glue:text}`ideal_corr:.2f` (Pearson). Grad-Dot and TracInCP, which
# look at gradients at a few states rather than at the path, give the twins close scores (relative
# differences {glue:text}`dot_reldiff:.2f` and {glue:text}`cp_reldiff:.2f`, against
# {glue:text}`ideal_reldiff_a:.2f` and {glue:text}`ideal_reldiff_b:.2f` for TracInIdeal).

# %% tolerance="magnitude"
toy_train = toys.toy_split(near.x_train, near.y_train)
toy_test = toys.toy_split(near.x_test, near.y_test)
configs = [TrainConfig(epochs=sgd_epochs, lr=sgd_lr, batch_size=1, init_seed=seed, order_seed=o)
           for o in orders]
runs = [train(config, toy_train, model=toys.LogisticModel()) for config in configs]
credits = [tracin_ideal(run, toy_train, toy_test) for run in runs]
first_visit = [epoch_order(len(toy_train), o, 0).tolist() for o in orders]
first_visit = [[order.index(i) for i in pair] for order in first_visit]


def relative_difference(scores: np.ndarray) -> float:
    """|a - b| / max(|a|, |b|) for the two scores of the pair on the green test point."""
    a, b = scores[target, pair]
    return float(abs(a - b) / max(abs(a), abs(b)))


dot_scores = grad_dot(runs[0], toy_train, toy_test)
cp_scores = tracin_cp(runs[0], toy_train, toy_test)
glue("sgd_epochs", sgd_epochs, display=False)
glue("sgd_lr", float(sgd_lr), display=False)
for letter, o, credit in zip("ab", orders, credits):
    glue(f"order_{letter}", o, display=False)
    glue(f"ideal_{letter}0", float(credit[target, pair[0]]), display=False)
    glue(f"ideal_{letter}1", float(credit[target, pair[1]]), display=False)
    glue(f"ideal_reldiff_{letter}", float(relative_difference(credit)), display=False)
glue("ideal_corr", float(pearsonr(credits[0][target], credits[1][target]).statistic), display=False)
glue("dot_reldiff", float(relative_difference(dot_scores)), display=False)
glue("cp_reldiff", float(relative_difference(cp_scores)), display=False)
for o, credit, visits in zip(orders, credits, first_visit):
    print(f"order {o}: TracInIdeal credits of the twins {credit[target, pair].round(4)}, "
          f"first visited at positions {visits} of epoch 0")
check("the twin visited first in the first epoch gets the larger credit, in both orders",
      all(np.argmax(c[target, pair]) == np.argmin(v) for c, v in zip(credits, first_visit)))
check("the two orders rank the twins differently",
      np.argmax(credits[0][target, pair]) != np.argmax(credits[1][target, pair]))
check("TracInIdeal separates the twins more than Grad-Dot and TracInCP, in both orders",
      min(relative_difference(c) for c in credits)
      > max(relative_difference(dot_scores), relative_difference(cp_scores)))

# %% [markdown]
# ### Leave-one-out is not the sum of the credits
#
# The credits of one test point add up, over all training examples, to its loss at initialisation
# minus its final loss ({glue:text}`credit_total:.3f` for the green test point). It is tempting to
# read an example's credit as what the test loss would lose without it. Retraining without the
# example (same initialisation, same order of the others) says otherwise: for the first green
# triangle, LOO is {glue:text}`loo_twin:.4f` while its credit is {glue:text}`own_twin:.3f`. Once the
# example is gone, every later state changes, and so do the credits of all the other examples. The
# two runs' credits both telescope to a difference of losses, which gives an exact split:
# LOO = the example's own credit + the change in the other examples' credits. Here that change is
# {glue:text}`shift_twin:.3f`, which cancels almost all of the own credit (the split holds for
# both twins, with a largest error of {glue:text}`split_error:.1e`). Summed over the training set,
# the LOO values add up to {glue:text}`loo_total:.3f`, nowhere near the total fall of the loss.

# %% tolerance={"default": "magnitude", "split_error": "noise"}
split = toys.loo_credit_decomposition(runs[0], toy_train, toy_test, pair)
loo_all = leave_one_out(runs[0], toy_train, toy_test)
loo_twin, own_twin = split.loo[target, 0], split.own_credit[target, 0]
shift_twin = split.others_shift[target, 0]
split_error = np.abs(split.loo - split.own_credit - split.others_shift).max()
credit_total, loo_total = credits[0][target].sum(), loo_all[target].sum()
glue("credit_total", float(credit_total), display=False)
glue("loo_twin", float(loo_twin), display=False)
glue("own_twin", float(own_twin), display=False)
glue("shift_twin", float(shift_twin), display=False)
glue("split_error", float(split_error), display=False)
glue("loo_total", float(loo_total), display=False)
print(f"first twin: LOO {loo_twin:.4f} = own credit {own_twin:.4f} "
      f"+ change of the others' credits {shift_twin:.4f}")
print(f"green test point: credits sum to {credit_total:.4f}, LOO values sum to {loo_total:.4f}")
check("the twin's LOO differs from its credit by more than ten times the LOO itself",
      abs(loo_twin - own_twin) > 10 * abs(loo_twin))
check("LOO = own credit + change of the others' credits, to 1e-6 for both twins",
      split_error < 1e-6)
check("the LOO values do not add up to the total fall of the test loss (off by more than half)",
      abs(loo_total - credit_total) > 0.5 * abs(credit_total))

# %% [markdown]
# ### TracInCP as an expected Grad-Dot
#
# The paper offers two readings of TracInCP. In the first, each checkpoint is a sampled model state,
# and the learning rate times the gradient product approximates the change of the test loss if one
# SGD step were taken on the training example from that state; TracInIdeal and TracInCP then differ
# only in which states they sample. In the second, TracInCP is Grad-Dot averaged over the
# checkpoints, weighted by the learning rates. The second is an identity we can check: Grad-Dot
# computed at each of the {glue:text}`n_checkpoints:d` checkpoints and summed with the learning
# rates as weights equals TracInCP: the largest difference is {glue:text}`cp_error:.1e`, for scores
# up to {glue:text}`cp_scale:.3f`.

# %% tolerance={"default": "magnitude", "cp_error": "noise"}
expected_dot = toys.lr_weighted_grad_dot(runs[0], toy_train, toy_test)
cp_error = np.abs(expected_dot - cp_scores).max()
glue("n_checkpoints", len(runs[0].checkpoints), display=False)
glue("cp_error", float(cp_error), display=False)
glue("cp_scale", float(np.abs(cp_scores).max()), display=False)
check("TracInCP equals the learning-rate-weighted sum of Grad-Dot over checkpoints (to 1e-9)",
      cp_error <= 1e-9 * max(1.0, np.abs(cp_scores).max()))
