"""Tests for study/core/mi/critic.py: the critic's first layer is two dense maps summed
(docs/method.md §4.3), with Glorot-uniform kernels. Its bfloat16 path is tested in
test_precision.py.
"""

import math

import torch

from study.core.mi import Critic


def test_critic_first_layer_is_two_summed_maps():
    critic = Critic(2, 3, 4, width=8, depth=2, seeds=[1, 2])
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 3, generator=gen), torch.randn(2, 5, 4, generator=gen)
    # docs/method.md §4.3: Dense on [a; b] == W_a a + W_b b
    w = torch.cat([critic.w_a, critic.w_b], dim=1)  # (R, 7, H)
    h = torch.relu(torch.bmm(torch.cat([a, b], dim=2), w) + critic.b_1)
    h = torch.relu(torch.bmm(h, critic.w_h[0]) + critic.b_h[0])
    want = (torch.bmm(h, critic.w_o) + critic.b_o).squeeze(-1)
    torch.testing.assert_close(critic(a, b), want)
    limit = math.sqrt(6 / (3 + 8))  # Glorot-uniform
    assert critic.w_a.abs().max() <= limit
