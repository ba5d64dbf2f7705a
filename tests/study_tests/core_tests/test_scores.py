"""Tests for study/core/scores.py: accuracy against a Keras BinaryAccuracy transcription and hand
built cases, R² against hand-computed values.
"""

import math

import numpy as np
import pytest
import torch

from study.core.scores import accuracy, r2

# --------------------------------------------------------------------------------------------
# task metrics


def test_accuracy_hand_built_with_zero_targets_and_outputs():
    # entries: agree, agree, (z<0, y=0: both negative) agree, (z=0 negative, y>0) disagree
    output = torch.tensor([0.5, -0.2, -0.1, 0.0]).reshape(1, 4, 1)
    target = torch.tensor([1.0, -1.0, 0.0, 1.0]).reshape(1, 4, 1)
    assert accuracy(output, target).item() == pytest.approx(0.75)


def test_accuracy_perfect_and_inverted():
    gen = torch.Generator().manual_seed(28)
    target = torch.sign(torch.randn(2, 3, 5, 2, generator=gen))
    assert (accuracy(target.clone(), target) == 1).all()
    assert (accuracy(-target, target) == 0).all()
    assert accuracy(target, target).shape == (2,)


def test_accuracy_equals_keras_binary_accuracy_transcription():
    # docs/method.md §2.4: label = round((y+1)/2) (numpy rounds half to even, like TF), prediction
    # (z+1)/2 thresholded at 0.5; ramped targets and exact zeros included
    rng = np.random.default_rng(29)
    target = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(3, 4, 50, 2))
    output = rng.choice([-0.7, 0.0, 0.3], size=(3, 4, 50, 2)) + 0.2 * target
    label = np.round((target + 1.0) / 2.0)
    pred = ((output + 1.0) / 2.0 > 0.5).astype(float)
    expected = (label == pred).mean(axis=(1, 2, 3))
    got = accuracy(torch.tensor(output), torch.tensor(target))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_r2_perfect_mean_and_offset_predictions():
    gen = torch.Generator().manual_seed(30)
    target = torch.randn(2, 4, 100, 3, generator=gen, dtype=torch.float64)  # (S, B, T, C)
    assert r2(target, target).shape == (2, 3)
    torch.testing.assert_close(r2(target.clone(), target), torch.ones(2, 3, dtype=torch.float64))
    mean = target.mean((1, 2), keepdim=True).expand_as(target)
    torch.testing.assert_close(r2(mean, target), torch.zeros(2, 3, dtype=torch.float64))
    # a constant offset c: SS_res = BT·c², SS_tot = BT·var(y) -> R² = 1 − c²/var(y)
    offset = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    var = target.var((1, 2), unbiased=False)
    torch.testing.assert_close(r2(target + offset, target), 1.0 - offset**2 / var)


def test_r2_hand_built_and_constant_target():
    target = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]).reshape(1, 3, 2)
    output = torch.tensor([[1.0, 5.0], [2.0, 4.0], [4.0, 5.0]]).reshape(1, 3, 2)
    got = r2(output, target)
    assert got.dtype == torch.float32
    # output 0: SS_res = 1, SS_tot = 2 -> 0.5; output 1: constant target -> NaN
    assert got[0].item() == pytest.approx(0.5)
    assert math.isnan(got[1].item())


@pytest.mark.parametrize("fn", [accuracy, r2])
@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            (torch.ones(2, 3, 4), torch.ones(2, 3, 5)),
            ValueError,
            r"\(\): output and target must have the same shape \(..., B, T, C\), but got "
            r"\(2, 3, 4\) and \(2, 3, 5\)",
        ),
        (
            (torch.ones(3, 4), torch.ones(3, 4)),
            ValueError,
            r"\(\): output must have at least 3 axes, but got shape \(3, 4\)",
        ),
        (
            (torch.ones(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.int64)),
            TypeError,
            r"\(\): target must be a floating tensor, but got dtype torch.int64",
        ),
    ],
)
def test_task_metrics_reject_bad_input(fn, args, error, match):
    with pytest.raises(error, match=fn.__name__ + match):
        fn(*args)
