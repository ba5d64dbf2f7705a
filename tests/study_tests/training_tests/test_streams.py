"""Tests of study/training/streams.py: the table's derivations, and the trial's streams in
use (the same seed gives the same curves, member i's weights do not depend on S)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_trial import same, tiny

from study.core.networks import member_generators
from study.training import Trainer, streams, train


def test_train_same_seed_same_metrics():
    a = train(tiny(**{"train.epochs": 3, "train.eval_every": 1, "train.checkpoint_every": 1}))
    b = train(tiny(**{"train.epochs": 3, "train.eval_every": 1, "train.checkpoint_every": 1}))
    c = train(
        tiny(**{"train.epochs": 3, "train.eval_every": 1, "train.checkpoint_every": 1, "seed": 5})
    )
    assert all(same(x.metrics, y.metrics) for x, y in zip(a.history, b.history))
    assert not all(same(x.metrics, y.metrics) for x, y in zip(a.history, c.history))


def test_train_member_initialisation_does_not_depend_on_population_size():
    # member i is initialised from seed + i whatever S is
    big = Trainer(tiny(seeds=3, seed=10))
    small = Trainer(tiny(seeds=1, seed=12))
    assert torch.equal(big.net.w_rec[2], small.net.w_rec[0])
    assert torch.equal(big.mi.critic.w_a[2], small.mi.critic.w_a[0])


# ----------------------------------------------------------------------------------------------
# the table: the recorded derivations (changing one changes every curve)


@pytest.mark.parametrize(
    "stream, key",
    [(streams.TRAIN, 1), (streams.EVAL, 2), (streams.NULL_PARTITIONS, 3), (streams.FIXED_EVAL, 4)],
)
def test_stream_keys_give_the_recorded_seeds(stream, key):
    assert stream.entropy(17) == [17, key]
    want = np.random.default_rng([17, key]).random(5)
    assert np.array_equal(stream.rng(17).random(5), want)
    assert stream.generator(17, "cpu").initial_seed() == 17 * 7919 + key


def test_streams_of_two_trials_never_share_a_seed():
    keys = [s.key for s in streams.STREAMS]
    assert len(set(keys)) == len(keys)
    torch_seeds = {
        s.generator(seed, "cpu").initial_seed() for seed in range(50) for s in streams.STREAMS
    }
    assert len(torch_seeds) == 50 * len(streams.STREAMS)


def test_heldout_mi_seed_is_one_uint32_per_epoch():
    want = int(np.random.SeedSequence([3, 40, 0x686F]).generate_state(1)[0])
    assert streams.heldout_mi_seed(3, 40) == want
    seeds = {streams.heldout_mi_seed(3, e) for e in range(0, 200, 10)}
    assert len(seeds) == 20 and all(0 <= x < 2**32 for x in seeds)


def test_member_seeds_are_the_integers_the_networks_are_initialised_from():
    assert streams.member_seeds(10, 3) == [10, 11, 12]
    gens = member_generators(10, 3)
    assert [g.initial_seed() for g in gens] == streams.member_seeds(10, 3)


def test_trial_streams_continue_from_their_state():
    a = streams.TrialStreams(5, "cpu")
    a.train_rng.random(7)
    torch.rand(3, generator=a.eval_gen)
    state = a.state()
    b = streams.TrialStreams(5, "cpu")
    b.load_state(state)
    for x, y in ((a.train_rng, b.train_rng), (a.eval_rng, b.eval_rng)):
        assert np.array_equal(x.random(4), y.random(4))
    for x, y in ((a.train_gen, b.train_gen), (a.eval_gen, b.eval_gen)):
        assert torch.equal(torch.rand(4, generator=x), torch.rand(4, generator=y))
    assert sorted(state) == ["data", "eval", "eval_gen", "gen"]  # the checkpoint's "rng" keys


def test_fixed_evaluation_streams_restart_and_leave_the_others_alone():
    t = streams.TrialStreams(5, "cpu")
    rng1, gen1 = t.for_batch(evaluating=True, fixed=True)
    first = (rng1.random(3), torch.rand(3, generator=gen1))
    rng2, gen2 = t.for_batch(evaluating=True, fixed=True)
    assert np.array_equal(first[0], rng2.random(3))
    assert torch.equal(first[1], torch.rand(3, generator=gen2))
    rng, gen = t.for_batch(evaluating=False, fixed=True)  # training never gets the fixed batch
    assert rng is t.train_rng and gen is t.train_gen
    rng, gen = t.for_batch(evaluating=True, fixed=False)
    assert rng is t.eval_rng and gen is t.eval_gen
    assert np.array_equal(t.train_rng.random(3), streams.TRAIN.rng(5).random(3))
