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
# # Your own model
#
# The previous pages ask the paper's question of one small CNN trained by `infcore`'s own SGD loop.
# This page asks it of a model that `infcore` did not train: a multilayer perceptron on
# scikit-learn's handwritten digits (8 x 8 pixels, all ten classes, no download), trained by a
# plain PyTorch loop with Adam. The steps are the ones to copy for your model:
#
# 1. train it your way, keeping a few checkpoints;
# 2. wrap it with `infcore.own_model.from_model` (weights, checkpoints with their learning rates,
#    a per-example loss, the weight decay of the objective);
# 3. score the training examples with every method that does not replay `infcore`'s training;
# 4. audit how much the scores depend on the training run, with `infcore.audit.stability_audit`.
#
# The peers take the same parts: captum's `TracInCP(model, train_dataset, checkpoints,
# checkpoints_load_func, loss_fn)` and dattri's `AttributionTask(loss_func, model, checkpoints)`.
# The README's section on conventions maps `infcore`'s scores to theirs.

# %% tags=["parameters"]
n_train = 150
n_test = 30
data_seed = 0
hidden = 16
steps = 80
lr = 0.02
checkpoint_every = 20
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
audit_method = "influence_function"
target_pearson = 0.9

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display
from myst_nb import glue
from sklearn.datasets import load_digits
from torch import nn

from infcore import plots, stability, validation
from infcore.audit import stability_audit
from infcore.methods import compute_scores
from infcore.own_model import as_split, from_model

validation.check_page("09_your_model", globals())

# %% [markdown]
# ## The data and the model
#
# The digits are split at random into a training and a test set; the data could as well be a
# `Dataset` or a `DataLoader` without shuffling (`as_split` reads any of them in order, so that
# column $i$ of every score matrix is training example $i$).

# %%
digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # (1797, 64), in [0, 1]
y = torch.tensor(digits.target)
order = torch.randperm(len(y), generator=torch.Generator().manual_seed(data_seed))
train = as_split((x[order[:n_train]], y[order[:n_train]]))
test = as_split((x[order[n_train:n_train + n_test]], y[order[n_train:n_train + n_test]]))

# %% [markdown]
# The network has one hidden layer. Two things make every method available: a `features(x)` method
# that returns the last hidden layer, and a last layer without bias, so that the logits are
# exactly `features(x) @ W.T` (what representer points need).

# %%
class MLP(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, hidden)
        self.head = nn.Linear(hidden, 10, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

# %% [markdown]
# The training is yours: here full-batch Adam with an L2 penalty (Adam's `weight_decay`, which adds
# $\lambda\theta$ to the gradient, the gradient of $\frac{\lambda}{2}\lVert\theta\rVert^2$), with a
# checkpoint every few steps. Full batches make a run depend on its seed only through the
# initialisation, so that leave-one-out retraining changes nothing but the example left out.
# The function ends by handing the model to `infcore`: `from_model` takes the checkpoints with the
# learning rate in effect (for TracInCP), the loss without reduction, and the weight decay.

# %%
weight_decay = 1e-3


def fit(data, seed: int = 0):
    torch.manual_seed(seed)
    net = MLP(hidden)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    checkpoints = []
    for step in range(1, steps + 1):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(data.x), data.y).backward()
        optimiser.step()
        if step % checkpoint_every == 0:
            checkpoints.append({k: v.clone() for k, v in net.state_dict().items()})
    return from_model(net, loss=nn.CrossEntropyLoss(reduction="none"), checkpoints=checkpoints,
                      lrs=lr, weight_decay=weight_decay)


trained = fit(train)

# %% tags=["remove-input"] tolerance="correlation"
with torch.no_grad():
    accuracy = (trained.model(test.x).argmax(dim=1) == test.y).float().mean().item()
glue("n_params", sum(p.numel() for p in trained.params.values()), display=False)
glue("accuracy", accuracy, display=False)
glue("n_train", n_train, display=False)
glue("n_test", n_test, display=False)

# %% [markdown]
# The network has {glue:text}`n_params` parameters, is trained on {glue:text}`n_train` digits and
# classifies {glue:text}`accuracy:.2f` of the {glue:text}`n_test` test digits correctly.
#
# ## Every method on one model
#
# Six of the seven methods run on this model. Leave-one-out retrains it without each training
# example with the same `fit` (the `retrain` argument); influence functions form the exact Hessian,
# which a model of this size allows (above `infcore.methods.influence.MAX_EXACT_HESSIAN_PARAMS`
# parameters the call stops and says how much memory the Hessian would take); TracInIdeal
# replays `infcore`'s own SGD steps, which a loop of your own does not have.

# %%
options = {
    "leave_one_out": {"retrain": fit},
    "influence_function": {"damping": "auto"},
    "tracin_cp": {}, "representer": {}, "grad_dot": {}, "grad_cos": {},
}
scores = {name: compute_scores(name, trained, train, test, **kw) for name, kw in options.items()}

# %% [markdown]
# How far does each method agree with leave-one-out, the change it approximates? Each number is a
# mean over test examples (the paper's metrics, as in Table 1).

# %% tags=["hide-input"] tolerance={"default": "correlation", "top_overlap": "percent"}
agreement = pd.DataFrame({name: stability.row_metrics(s, scores["leave_one_out"]).mean()
                          for name, s in scores.items() if name != "leave_one_out"}).T
display(agreement.round(3))

# %% [markdown]
# ## The most helpful and the most harmful training digits
#
# For three test digits, {numref}`fig-proponents` shows the three training digits that influence
# functions score highest (proponents, green: training on them lowers the test loss) and lowest
# (opponents, red).

# %% tags=["remove-input"]
fig = plots.proponents_opponents(scores["influence_function"], train, test, [0, 1, 2], k=3,
                                 image_shape=(8, 8))
glue("fig_proponents", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_proponents
# :name: fig-proponents
#
# Three test digits (left) with their top three proponents (green) and opponents (red) under
# influence functions; each title gives the label and the score.
# ```
#
# ## How stable are these scores?
#
# One model's scores are one draw. The audit trains a model for each seed with `fit`, scores with
# one method, and compares every pair of runs; then it averages the scores of two disjoint halves of
# the seeds (expected scores, Table 2) and reports how many models per half bring their agreement to
# the target. Its scores are cached under the `key`: a function cannot be hashed reliably, so the
# key names the training, and must change when `fit` does.

# %% tags=["remove-stderr"]
audit = stability_audit(lambda data, seed: fit(data, seed), seeds, train, test, audit_method,
                        key=f"digits-mlp-adam-h{hidden}-s{steps}-lr{lr}-wd{weight_decay}",
                        options=options.get(audit_method, {}), target=target_pearson)

# %% [markdown]
# Between single runs, each metric's mean over the pairs of seeds, with the lowest and highest
# bound of the pairs' 95% bootstrap intervals (over test examples):

# %% tags=["hide-input"] tolerance={"default": "correlation", "top_overlap": "percent"}
display(audit.summary.set_index("metric").T.round(3))

# %% [markdown]
# and the expected scores of two disjoint sets of $m$ models each:

# %% tags=["hide-input"] tolerance={"default": "correlation", "top_overlap": "percent"}
display(audit.curve.groupby("n_models")[list(stability.METRICS)].mean().round(3))

# %% [markdown]
# ## Closing note
#
# The audit's report for this model, as `print(audit)` gives it:

# %% tolerance="percent"
print(audit)
