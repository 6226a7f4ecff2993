"""Tests of skinlesion_utils.splits."""
from __future__ import annotations

import numpy as np
import pytest

from skinlesion_utils import splits


def test_stratified_subset():
    y = np.array([0] * 10 + [1] * 5)
    idx = splits.per_class_subset(y, 3, seed=1)
    assert len(idx) == 6 and (np.diff(idx) > 0).all()
    assert (y[idx] == 0).sum() == 3 and (y[idx] == 1).sum() == 3
    np.testing.assert_array_equal(idx, splits.per_class_subset(y, 3, seed=1))
    assert not all(np.array_equal(idx, splits.per_class_subset(y, 3, seed=s)) for s in range(2, 6))
    with pytest.raises(ValueError, match="fewer than per_class"):
        splits.per_class_subset(y, 6)
