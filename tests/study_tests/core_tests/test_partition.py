"""Tests for study/core/partition.py (contiguous group labels) and the label checks of
study/core/_checks.py."""

import numpy as np
import pytest
import torch

from study.core._checks import _as_labels
from study.core.partition import groups


def group_sizes(labels):
    """Sizes of groups 0..K-1 of a label vector (moved here from study/core/partition.py, where
    nothing but these tests used it; the library's is study.contract.outcomes.group_sizes)."""
    return tuple(int(c) for c in np.bincount(_as_labels(labels, "group_sizes()")))


def group_index(labels):
    """Unit indices of each group: K sorted int64 arrays (moved here from study/partition.py,
    where nothing but these tests used it)."""
    arr = _as_labels(labels, "group_index()")
    return [np.flatnonzero(arr == k) for k in range(int(arr.max()) + 1)]


@pytest.mark.parametrize(
    ("n_units", "n_groups", "sizes"),
    [
        (40, 2, (20, 20)),
        (40, 3, (14, 13, 13)),
        (10, 4, (3, 3, 2, 2)),
        (100, 6, (17, 17, 17, 17, 16, 16)),
        (5, 5, (1, 1, 1, 1, 1)),
        (7, 1, (7,)),
    ],
)
def test_groups_equal_sizes_larger_first(n_units, n_groups, sizes):
    labels = groups(n_units, n_groups)
    expected = np.concatenate([np.full(s, k) for k, s in enumerate(sizes)])
    assert labels.dtype == np.int64
    assert labels.shape == (n_units,)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("sizes", [(2, 5, 3), (1, 9), (4, 1, 1, 4)])
def test_groups_given_sizes(sizes):
    labels = groups(sum(sizes), len(sizes), sizes=sizes)
    expected = np.concatenate([np.full(s, k) for k, s in enumerate(sizes)])
    np.testing.assert_array_equal(labels, expected)


def test_groups_accepts_numpy_integers():
    labels = groups(np.int64(6), np.int32(2), sizes=np.array([4, 2]))
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"n_units": 0, "n_groups": 1},
            r"groups\(\): n_units must be at least 1, but got n_units=0",
        ),
        ({"n_units": 10, "n_groups": 0}, r"n_groups must be at least 1, but got n_groups=0"),
        (
            {"n_units": 4, "n_groups": 5},
            r"n_groups must be at most n_units, but got n_units=4, n_groups=5",
        ),
        (
            {"n_units": 10, "n_groups": 2, "sizes": (10,)},
            r"sizes must have n_groups=2 entries, but got 1 entries: sizes=\[10\]",
        ),
        (
            {"n_units": 10, "n_groups": 2, "sizes": (11, -1)},
            r"sizes must all be positive, but got sizes=\[11, -1\]",
        ),
        (
            {"n_units": 10, "n_groups": 2, "sizes": (5, 6)},
            r"sizes must sum to n_units=10, but got sizes=\[5, 6\] \(sum 11\)",
        ),
    ],
)
def test_groups_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        groups(**kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((40.0, 2), r"groups\(\): n_units must be an int, but got float 40.0"),
        ((40, True), r"n_groups must be an int, but got bool True"),
        ((4, 2, (2.0, 2.0)), r"each entry of sizes must be an int, but got float 2.0"),
    ],
)
def test_groups_rejects_bad_types(args, match):
    with pytest.raises(TypeError, match=match):
        groups(*args)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_group_sizes_and_index_on_unordered_labels(as_tensor):
    raw = [2, 0, 1, 0, 2, 2]
    labels = torch.tensor(raw) if as_tensor else np.array(raw)
    assert group_sizes(labels) == (2, 1, 3)
    index = group_index(labels)
    assert len(index) == 3
    for got, want in zip(index, [[1, 3], [2], [0, 4, 5]]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("n_units", "n_groups"), [(40, 3), (9, 9), (100, 2)])
def test_group_index_partitions_units_of_groups(n_units, n_groups):
    labels = groups(n_units, n_groups)
    index = group_index(labels)
    assert tuple(len(i) for i in index) == group_sizes(labels)
    np.testing.assert_array_equal(np.concatenate(index), np.arange(n_units))
    for k, idx in enumerate(index):
        assert (labels[idx] == k).all()


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (
            [[0, 1], [1, 0]],
            ValueError,
            r"group_sizes\(\): labels must be a non-empty vector of "
            r"shape \(N,\), but got shape \(2, 2\)",
        ),
        (
            [],
            ValueError,
            r"labels must be a non-empty vector of shape \(N,\), but got shape \(0,\)",
        ),
        (
            [0.0, 1.0],
            TypeError,
            r"group_sizes\(\): labels must be integers, but got dtype float64",
        ),
        (
            torch.tensor([0.0, 1.0]),
            TypeError,
            r"labels must be integers, but got dtype torch.float32",
        ),
        ([0, -1, 1], ValueError, r"labels must be non-negative, but got min -1"),
        (
            [0, 2, 2],
            ValueError,
            r"labels must use every index 0..K-1 \(K=3\), but \[1\] never occur",
        ),
    ],
)
def test_group_sizes_rejects_bad_labels(labels, error, match):
    with pytest.raises(error, match=match):
        group_sizes(labels)


def test_group_index_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"group_index\(\): labels must use every index"):
        group_index(np.array([1, 1]))
