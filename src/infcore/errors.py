"""Errors raised when a model or a call lacks something that a method needs.

Contents: :class:`MissingPartError` (no ``features``, no checkpoints, no way to retrain),
:class:`HessianTooLargeError` (too many parameters for an exact Hessian) and
:class:`NotPerExampleLossError` (a loss that reduces over the examples).
"""

from __future__ import annotations


class MissingPartError(ValueError):
    """A method needs a part of the model or of the call that was not given; the message names it."""


class HessianTooLargeError(ValueError):
    """The model has more parameters than an exact Hessian is allowed; the message gives the memory."""


class NotPerExampleLossError(ValueError):
    """A loss function returned something other than one value per example."""


__all__ = ["HessianTooLargeError", "MissingPartError", "NotPerExampleLossError"]
