"""Small worked examples: the chair regression and the 2-D toys of "Rethinking influence".

Chairs
    Ordinary least squares on a handful of points: every quantity has a closed form and can be
    checked against statsmodels.
2-D classification toys
    Two clusters in the plane and a few points placed near the boundary of an L2-penalised
    logistic model (scikit-learn): near-duplicate pairs whose single removal barely matters while
    removing both does (:func:`near_duplicates_toy`), a test point that copies a training point yet
    depends more on another one (:func:`identical_instance_toy`), and a test point whose strongest
    evidence belongs to the other class (:func:`identical_class_toy`). Influence is the change of
    the test log-loss when training points are removed and the model refitted
    (:func:`removal_effect`, :func:`toy_loo_scores`).
SGD on a toy
    A logistic regression (:class:`LogisticModel`) trained by :func:`infcore.training.train` at
    batch size 1, to show how TracInIdeal credits and leave-one-out influence depend on the states
    that training passes through (:func:`loo_credit_decomposition`), and that TracInCP is a
    learning-rate-weighted sum of Grad-Dot over checkpoints (:func:`lr_weighted_grad_dot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from infcore.data import Split
from infcore.training import TrainedModel, test_loss
from infcore.training import train as train_model

#: The four chairs of the paper's introduction: weight in kg, height in cm.
CHAIRS = np.array([[3.0, 60.0], [8.5, 85.0], [9.0, 90.0], [9.5, 95.0]])


@dataclass(frozen=True)
class LineFit:
    """A fitted line ``height = intercept + slope * weight``."""

    intercept: float
    slope: float

    def predict(self, weight: np.ndarray | float) -> np.ndarray:
        """Predicted height for ``weight`` (any shape)."""
        return self.intercept + self.slope * np.asarray(weight, dtype=float)


@dataclass(frozen=True)
class ChairInfluence:
    """The influence numbers of one left-out chair.

    Attributes
    ----------
    full, without : LineFit
        Fits on all chairs and on all chairs but the left-out one.
    test_prediction_full, test_prediction_without : float
        Both fits' predictions for the test chair.
    loo_distance : float
        ``test_prediction_without - test_prediction_full``: the change of the test prediction when
        the chair is left out.
    cooks_distance : ndarray of shape (n_chairs,)
        Cook's distance of every chair, computed from leave-one-out refits.
    """

    full: LineFit
    without: LineFit
    test_prediction_full: float
    test_prediction_without: float
    loo_distance: float
    cooks_distance: np.ndarray


def _validate_points(points: np.ndarray, name: str = "chairs") -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (n, 2) with columns (weight, height); got shape {points.shape}"
        )
    if points.shape[0] < 3:
        raise ValueError(f"{name} needs at least 3 rows so that a line fits without one; got {points.shape[0]}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} must contain only finite numbers")
    if np.ptp(points[:, 0]) == 0:
        raise ValueError(f"{name} must have at least two distinct weights to fit a slope")
    return points


def fit_line(points: np.ndarray) -> LineFit:
    """Least-squares line through ``points``.

    Parameters
    ----------
    points : array of shape (n, 2)
        Columns are (weight, height).

    Returns
    -------
    LineFit
    """
    design = np.column_stack([np.ones(len(points)), points[:, 0]])
    (intercept, slope), *_ = np.linalg.lstsq(design, points[:, 1], rcond=None)
    return LineFit(float(intercept), float(slope))


def residual_mean_square(points: np.ndarray) -> float:
    """Residual mean square ``s**2 = RSS / (n - 2)`` of the least-squares line through ``points``.

    Parameters
    ----------
    points : array of shape (n, 2)
        Columns are (weight, height); n >= 3.
    """
    points = _validate_points(points, "points")
    residuals = points[:, 1] - fit_line(points).predict(points[:, 0])
    return float(np.sum(residuals**2) / (len(points) - 2))


def cooks_distance(points: np.ndarray) -> np.ndarray:
    """Cook's distance of every point of a simple linear regression, by explicit leave-one-out refits.

    ``D_i = sum_j (yhat_j - yhat_j(i))**2 / (p * s**2)`` with ``p = 2`` fitted coefficients and
    ``s**2 = RSS / (n - p)`` the residual mean square of the full fit (Cook 1977).

    Parameters
    ----------
    points : array of shape (n, 2)
        Columns are (weight, height); n >= 3.

    Returns
    -------
    ndarray of shape (n,)
    """
    points = _validate_points(points, "points")
    n, p = len(points), 2
    fitted = fit_line(points).predict(points[:, 0])
    mse = residual_mean_square(points)
    if mse <= np.finfo(float).eps * np.var(points[:, 1]):
        raise ValueError("points lie exactly on a line: Cook's distance is undefined (zero residual variance)")
    distances = np.empty(n)
    for i in range(n):
        refit = fit_line(np.delete(points, i, axis=0))
        distances[i] = np.sum((fitted - refit.predict(points[:, 0])) ** 2) / (p * mse)
    return distances


def chair_influence(
    chairs: np.ndarray = CHAIRS, leave_out: int = 0, test_weight: float = 10.0
) -> ChairInfluence:
    """Leave-one-out influence of one chair on the prediction for a test chair.

    Parameters
    ----------
    chairs : array of shape (n, 2)
        Columns are (weight in kg, height in cm); n >= 3.
    leave_out : int
        Row of the chair to leave out, in ``range(n)``.
    test_weight : float
        Weight of the test chair whose height is predicted.

    Returns
    -------
    ChairInfluence
    """
    chairs = _validate_points(chairs)
    if not 0 <= leave_out < len(chairs):
        raise ValueError(f"leave_out must be in range(0, {len(chairs)}); got {leave_out}")
    if not np.isfinite(test_weight):
        raise ValueError(f"test_weight must be a finite number; got {test_weight}")
    full = fit_line(chairs)
    without = fit_line(np.delete(chairs, leave_out, axis=0))
    before, after = float(full.predict(test_weight)), float(without.predict(test_weight))
    return ChairInfluence(
        full=full,
        without=without,
        test_prediction_full=before,
        test_prediction_without=after,
        loo_distance=after - before,
        cooks_distance=cooks_distance(chairs),
    )


# --------------------------------------------------------------------------------------------------
# Two-dimensional classification toys of the "Rethinking influence" section.
#
# A logistic model with an L2 penalty (scikit-learn's LogisticRegression) separates two classes of
# points in the plane. The loss of a test point is its log-loss -log P(y | x), so every influence
# here is a change of log-loss, positive when removing the training points raises the test loss.
# --------------------------------------------------------------------------------------------------

#: Inverse L2 strength ``C`` of the toys' logistic model (scikit-learn's convention: the objective
#: is ``||w||**2 / 2 + C * sum of log-losses``). Large enough that points near the boundary
#: dominate, as the support vectors of a linear SVM would.
TOY_C = 10.0


@dataclass(frozen=True)
class LinearBoundary:
    """A binary logistic model on 2-D points: ``P(y = 1 | x) = sigmoid(weights @ x + bias)``.

    Attributes
    ----------
    weights : ndarray of shape (2,)
        Normal vector of the boundary, pointing towards class 1.
    bias : float
    """

    weights: np.ndarray
    bias: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Logit ``weights @ x + bias`` of points ``x`` of shape (n, 2); returns shape (n,)."""
        return np.asarray(x, dtype=float) @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class (0 or 1) of points ``x`` of shape (n, 2); returns shape (n,), int."""
        return (self.decision(x) > 0).astype(np.int64)

    def log_loss(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``-log P(y | x)`` of points ``x`` of shape (n, 2) with labels ``y`` of shape (n,)."""
        signed = np.where(np.asarray(y) == 1, 1.0, -1.0) * self.decision(x)
        return np.logaddexp(0.0, -signed)

    @property
    def angle_deg(self) -> float:
        """Direction of the normal vector ``weights``, in degrees from the first axis."""
        return float(np.degrees(np.arctan2(self.weights[1], self.weights[0])))

    def line(self, x1: np.ndarray) -> np.ndarray:
        """Second coordinate of the boundary points above first coordinates ``x1`` (any shape)."""
        if self.weights[1] == 0:
            raise ValueError("the boundary is vertical: it has no second coordinate per first one")
        return -(self.bias + self.weights[0] * np.asarray(x1, dtype=float)) / self.weights[1]


@dataclass(frozen=True)
class Toy2D:
    """A 2-D binary classification toy: training points, test points and named training groups.

    Attributes
    ----------
    x_train : ndarray of shape (n_train, 2)
    y_train : ndarray of shape (n_train,), int (0 or 1)
    x_test : ndarray of shape (n_test, 2)
    y_test : ndarray of shape (n_test,), int (0 or 1)
    groups : dict of str to ndarray of int
        Training indices of the points that the toy is about (e.g. a pair of near-duplicates).
    copy_of : ndarray of shape (n_test,), int
        Training index that each test point copies, -1 where it copies none.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    groups: dict[str, np.ndarray]
    copy_of: np.ndarray


@dataclass(frozen=True)
class RemovalEffect:
    """What happens when a group of training points is removed and the model refitted.

    Attributes
    ----------
    removed : ndarray of int
        Training indices that were removed.
    full, without : LinearBoundary
        Fits on all training points and on all but ``removed``.
    test_loss_change : ndarray of shape (n_test,)
        ``loss_without - loss_full`` of each test point: the group influence (positive = helpful).
    rotation_deg : float
        Signed angle from the full boundary's normal to the refitted one's, in [-180, 180).
    """

    removed: np.ndarray
    full: LinearBoundary
    without: LinearBoundary
    test_loss_change: np.ndarray
    rotation_deg: float


def _check_toy_data(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x_{name} must have shape (n, 2); got {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"y_{name} must have shape ({len(x)},); got {y.shape}")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"y_{name} must hold only the classes 0 and 1")
    return x, y.astype(np.int64)


def fit_boundary(x: np.ndarray, y: np.ndarray, C: float = TOY_C) -> LinearBoundary:
    """Fit the toys' L2-penalised logistic model.

    Parameters
    ----------
    x : ndarray of shape (n, 2)
    y : ndarray of shape (n,), with both classes 0 and 1 present
    C : float
        Inverse L2 strength, > 0 (scikit-learn's ``C``).

    Returns
    -------
    LinearBoundary
    """
    x, y = _check_toy_data(x, y, "train")
    if not C > 0:
        raise ValueError(f"C must be a number > 0; got {C!r}")
    if len(np.unique(y)) != 2:
        raise ValueError("y_train must contain both classes 0 and 1 to fit a boundary")
    # Newton's method to a tight tolerance: the leave-one-out changes studied here are as small as
    # 1e-4, and on a handful of 2-D points each Newton step costs nothing.
    model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1_000).fit(x, y)
    return LinearBoundary(weights=model.coef_[0].copy(), bias=float(model.intercept_[0]))


def removal_effect(toy: Toy2D, removed: np.ndarray | list[int], C: float = TOY_C) -> RemovalEffect:
    """Refit ``toy`` without the training points ``removed`` and measure the change.

    Parameters
    ----------
    toy : Toy2D
    removed : array of int
        Distinct training indices to remove (at least one).
    C : float
        Inverse L2 strength of the model.

    Returns
    -------
    RemovalEffect
    """
    removed = np.asarray(removed, dtype=np.int64).ravel()
    n_train = len(toy.y_train)
    if len(removed) == 0 or len(np.unique(removed)) != len(removed):
        raise ValueError("removed must hold at least one training index, without repeats")
    if np.any((removed < 0) | (removed >= n_train)):
        raise ValueError(f"removed must hold training indices in [0, {n_train - 1}]")
    kept = np.setdiff1d(np.arange(n_train), removed)
    full = fit_boundary(toy.x_train, toy.y_train, C)
    without = fit_boundary(toy.x_train[kept], toy.y_train[kept], C)
    change = without.log_loss(toy.x_test, toy.y_test) - full.log_loss(toy.x_test, toy.y_test)
    rotation = (without.angle_deg - full.angle_deg + 180.0) % 360.0 - 180.0
    return RemovalEffect(
        removed=removed, full=full, without=without, test_loss_change=change, rotation_deg=rotation
    )


def toy_loo_scores(toy: Toy2D, C: float = TOY_C) -> np.ndarray:
    """Leave-one-out influence of every training point on every test point.

    Returns
    -------
    ndarray of shape (n_test, n_train)
        ``loss_without_i(t) - loss_with_all(t)`` (positive = helpful).
    """
    full_loss = fit_boundary(toy.x_train, toy.y_train, C).log_loss(toy.x_test, toy.y_test)
    n_train = len(toy.y_train)
    scores = np.empty((len(toy.y_test), n_train))
    for i in range(n_train):
        kept = np.arange(n_train) != i
        without = fit_boundary(toy.x_train[kept], toy.y_train[kept], C)
        scores[:, i] = without.log_loss(toy.x_test, toy.y_test) - full_loss
    return scores


def _bulk(seed: int, n_bulk: int) -> tuple[np.ndarray, np.ndarray]:
    """Two clusters: class 0 in [-4, -2] x [-3, 3], class 1 its mirror image through the origin."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if isinstance(n_bulk, bool) or not isinstance(n_bulk, (int, np.integer)) or n_bulk < 2:
        raise ValueError(f"n_bulk must be an integer >= 2; got {n_bulk!r}")
    rng = np.random.default_rng(seed)
    class0 = np.column_stack([rng.uniform(-4.0, -2.0, n_bulk), rng.uniform(-3.0, 3.0, n_bulk)])
    x = np.vstack([class0, -class0])
    return x, np.repeat(np.array([0, 1]), n_bulk)


def _toy(
    x: np.ndarray,
    y: np.ndarray,
    x_test: list[list[float]] | np.ndarray,
    y_test: list[int],
    groups: dict[str, list[int]],
    copy_of: list[int],
) -> Toy2D:
    return Toy2D(
        x_train=x,
        y_train=y,
        x_test=np.asarray(x_test, dtype=float),
        y_test=np.asarray(y_test, dtype=np.int64),
        groups={name: np.asarray(index, dtype=np.int64) for name, index in groups.items()},
        copy_of=np.asarray(copy_of, dtype=np.int64),
    )


def near_duplicates_toy(seed: int = 0, n_bulk: int = 8, gap: float = 0.15) -> Toy2D:
    """Two clusters and, near the boundary, a pair of near-duplicate points of each class.

    The class-1 pair sits close to the class-0 cluster's side at the top, the class-0 pair is its
    mirror image at the bottom; together they tilt the boundary. The two test points lie next to the
    pairs, one of each class.

    Parameters
    ----------
    seed : int
        Seed of the cluster points, >= 0.
    n_bulk : int
        Cluster points per class, >= 2.
    gap : float
        Distance between the two points of a pair, > 0.

    Returns
    -------
    Toy2D
        ``groups["pair_class1"]`` and ``groups["pair_class0"]`` hold the pairs' training indices.
    """
    if not gap > 0:
        raise ValueError(f"gap must be a number > 0; got {gap!r}")
    x, y = _bulk(seed, n_bulk)
    pair1 = np.array([[-0.5, 2.5], [-0.5 + gap / np.sqrt(2), 2.5 + gap / np.sqrt(2)]])
    x = np.vstack([x, pair1, -pair1])
    y = np.concatenate([y, [1, 1, 0, 0]])
    n = 2 * n_bulk
    return _toy(
        x, y, x_test=[[0.0, 3.0], [0.0, -3.0]], y_test=[1, 0],
        groups={"pair_class1": [n, n + 1], "pair_class0": [n + 2, n + 3]}, copy_of=[-1, -1],
    )


def identical_instance_toy(seed: int = 0, n_bulk: int = 8) -> Toy2D:
    """A test point that copies a training point, and a class-1 point that holds the boundary.

    ``groups["copied"]`` is a class-1 training point inside its class's side; the single test point
    is its copy. ``groups["support"]`` is a class-1 point near the class-0 cluster that pushes the
    boundary away from the copied point.

    Parameters
    ----------
    seed : int
        Seed of the cluster points, >= 0.
    n_bulk : int
        Cluster points per class, >= 2.

    Returns
    -------
    Toy2D
    """
    x, y = _bulk(seed, n_bulk)
    support, copied = np.array([-0.8, -0.5]), np.array([1.0, 1.5])
    x = np.vstack([x, copied, support])
    y = np.concatenate([y, [1, 1]])
    n = 2 * n_bulk
    return _toy(
        x, y, x_test=[copied], y_test=[1],
        groups={"copied": [n], "support": [n + 1]}, copy_of=[n],
    )


def identical_class_toy(seed: int = 0, n_bulk: int = 8) -> Toy2D:
    """A class-0 test point whose strongest evidence is a class-1 training point.

    ``groups["anchor"]`` is a class-1 point at the bottom, on the class-0 side of the middle; it
    tilts the boundary, which moves the boundary away from the class-0 test point at the top.

    Parameters
    ----------
    seed : int
        Seed of the cluster points, >= 0.
    n_bulk : int
        Cluster points per class, >= 2.

    Returns
    -------
    Toy2D
    """
    x, y = _bulk(seed, n_bulk)
    x = np.vstack([x, [-1.0, -3.5]])
    y = np.concatenate([y, [1]])
    return _toy(
        x, y, x_test=[[0.3, 3.5]], y_test=[0], groups={"anchor": [2 * n_bulk]}, copy_of=[-1]
    )


# --------------------------------------------------------------------------------------------------
# A tiny model trained by SGD on a 2-D toy: how the influence of an example depends on the states
# that training passes through. Training, TracInIdeal and Grad-Dot are the book's own
# (infcore.training, infcore.methods); the model is a logistic regression, so that one SGD run takes
# milliseconds and every training example can be left out in turn.
# --------------------------------------------------------------------------------------------------


class LogisticModel(nn.Module):
    """Multinomial logistic regression: logits ``x @ W.T + b`` of shape (n, n_classes).

    Parameters
    ----------
    n_features : int
        Size of an input point (2 for the toys).
    n_classes : int
        Number of logits.
    """

    def __init__(self, n_features: int = 2, n_classes: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (n, n_classes) for points of shape (n, n_features)."""
        return self.linear(x)


def toy_split(x: np.ndarray, y: np.ndarray) -> Split:
    """A toy's points as a :class:`infcore.data.Split` (x float32 of shape (n, 2), y int64)."""
    x, y = _check_toy_data(x, y, "split")
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))


def lr_weighted_grad_dot(trained: TrainedModel, train: Split, test: Split) -> np.ndarray:
    """Grad-Dot at every checkpoint, summed with the learning rates as weights.

    ``sum_k lrs[k] * grad_dot(W_k)``: the checkpoint average of Grad-Dot, weighted by the learning
    rates and times their sum. Computed with :func:`infcore.methods.gradients.grad_dot` on each
    checkpoint in turn, it is the second reading of TracInCP (an expected Grad-Dot over states).

    Returns
    -------
    ndarray of shape (n_test, n_train)
    """
    # Imported here, as in loo_credit_decomposition, so that the chair and 2-D toys (and the
    # figures that import this module) do not depend on the influence methods.
    from infcore.methods.gradients import grad_dot

    total = np.zeros((len(test), len(train)))
    for params, lr in zip(trained.checkpoints, trained.lrs):
        state = replace(trained, params=params, checkpoints=[params], lrs=[lr])
        total += lr * grad_dot(state, train, test)
    return total


@dataclass(frozen=True)
class CreditDecomposition:
    """Leave-one-out influence of SGD training, split along the TracInIdeal credits.

    With batch size 1 the TracInIdeal credits of a test point sum to its loss at initialisation
    minus its final loss, in the full run and in the run without example ``i`` alike; subtracting
    the two sums gives, exactly, ``loo = own_credit + others_shift``.

    Attributes
    ----------
    examples : ndarray of shape (n_examples,), int
        The training examples that were left out, one at a time.
    loo : ndarray of shape (n_test, n_examples)
        ``L_without_i(t) - L_all(t)``: retrained without ``i``, with the same initialisation and the
        same order of the other examples.
    own_credit : ndarray of shape (n_test, n_examples)
        TracInIdeal credit of ``i`` in the full run.
    others_shift : ndarray of shape (n_test, n_examples)
        ``sum over j != i of (credit of j in the full run - credit of j in the run without i)``: how
        much the other examples' credits change because the states after ``i``'s steps change.
    """

    examples: np.ndarray
    loo: np.ndarray
    own_credit: np.ndarray
    others_shift: np.ndarray


def loo_credit_decomposition(
    trained: TrainedModel, train: Split, test: Split, examples: Sequence[int]
) -> CreditDecomposition:
    """Retrain without each of ``examples`` and split its LOO influence along TracInIdeal credits.

    Costs one training run and one TracInIdeal replay per example, plus one replay of ``trained``.

    Parameters
    ----------
    trained : TrainedModel
        Trained on all of ``train`` with ``batch_size == 1``.
    train : Split of n_train examples
    test : Split of n_test examples
    examples : sequence of int
        Distinct training indices to leave out (at least one).

    Returns
    -------
    CreditDecomposition
    """
    from infcore.methods.tracin import tracin_ideal

    if trained.excluded is not None:
        raise ValueError(
            f"trained must use every training example; it leaves out {trained.excluded}"
        )
    examples = np.asarray(examples, dtype=np.int64).ravel()
    if len(examples) == 0 or len(np.unique(examples)) != len(examples):
        raise ValueError("examples must hold at least one training index, without repeats")
    if np.any((examples < 0) | (examples >= len(train))):
        raise ValueError(f"examples must hold training indices in [0, {len(train) - 1}]")
    full_credit = tracin_ideal(trained, train, test)
    full_loss = test_loss(trained, test).numpy()
    shape = (len(test), len(examples))
    loo, others = np.empty(shape), np.empty(shape)
    for column, i in enumerate(examples):
        without = train_model(trained.config, train, model=trained.model, exclude=int(i))
        loo[:, column] = test_loss(without, test).numpy() - full_loss
        credit = tracin_ideal(without, train, test)
        kept = np.arange(len(train)) != i
        others[:, column] = (full_credit[:, kept] - credit[:, kept]).sum(axis=1)
    return CreditDecomposition(
        examples=examples, loo=loo, own_credit=full_credit[:, examples], others_shift=others
    )
