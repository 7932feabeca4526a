"""The stability audit: one model per seed, the pairwise metrics with intervals, the curve."""

import numpy as np
import pytest
from test_own_model import _data, fit

from infcore import stability
from infcore.audit import stability_audit
from infcore.cache import Cache


def test_audit_reports_pairs_curve_and_uses_the_cache(tmp_path, one_thread):
    train, test = _data(20, 0), _data(5, 1)
    calls = []

    def train_fn(data, seed):
        calls.append(seed)
        return fit(data, seed=seed, steps=20)

    cache = Cache(tmp_path)
    audit = stability_audit(train_fn, [0, 1, 2, 3], train, test, "grad_cos", key="mlp-v1",
                            cache=cache, progress=False, n_boot=50)
    assert len(audit.pairs) == 6 * len(stability.METRICS)
    assert list(audit.summary.metric) == list(stability.METRICS)
    assert np.all(audit.pairs.ci_low <= audit.pairs["mean"] + 1e-12)
    assert sorted(audit.curve.n_models.unique()) == [1, 2]
    assert "grad_cos" in str(audit) and "m=2" in str(audit)
    again = stability_audit(train_fn, [0, 1, 2, 3], train, test, "grad_cos", key="mlp-v1",
                            cache=cache, progress=False, n_boot=50)
    assert calls == [0, 1, 2, 3]  # the second audit trained nothing
    assert again.pairs.equals(audit.pairs)
    stability_audit(train_fn, [0, 1], train, test, "grad_cos", key="mlp-v2", cache=cache,
                    progress=False, n_boot=50)
    assert calls[4:] == [0, 1]  # another key trains again


def test_audit_checks_its_arguments():
    with pytest.raises(ValueError, match="2 distinct seeds"):
        stability_audit(fit, [0], _data(5, 0), _data(2, 1), "grad_dot", key="k")
    with pytest.raises(ValueError, match="unknown method"):
        stability_audit(fit, [0, 1], _data(5, 0), _data(2, 1), "nope", key="k")
