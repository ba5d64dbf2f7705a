"""The trial config sections beside the task: network, partition, MI penalty, critic, network
optimiser, training loop, the onset rule, the intervention and the structure-only penalty
(`network`, `partition`, `mi`, `critic`, `optim`, `train`, `emergence`, `intervention`,
`structure_penalty`). Defaults are the reference working-memory settings (docs/method.md §5.1);
by default there is no intervention and no structure penalty.

`study.spec.trial` assembles them, with the task sections, into TrialConfig; the cross-field
checks live there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from study.contract import names
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z
from study.spec._validation import Strict

__all__ = [
    "NetworkConfig",
    "PartitionConfig",
    "HeldoutConfig",
    "MIConfig",
    "OptimizerConfig",
    "CriticConfig",
    "NetOptimConfig",
    "TrainConfig",
    "EmergenceConfig",
    "InterventionConfig",
    "StructurePenaltyConfig",
]


class NetworkConfig(Strict):
    kind: Literal["leaky", "gru"] = "leaky"
    hidden: int = Field(40, ge=2)  # N units
    alpha: float = Field(0.1, gt=0, le=1)  # leak dt/tau (leaky only)
    noise: float = Field(0.1, ge=0)  # std of additive state noise per step
    gain: float = Field(1.0, gt=0)  # W_rec ~ N(0, gain^2 / N) (leaky only)


class PartitionConfig(Strict):
    groups: int = Field(2, ge=1)  # K contiguous subgroups
    sizes: tuple[int, ...] | None = None  # explicit group sizes (sum = network.hidden)


class HeldoutConfig(Strict):
    """The held-out MI critic (`study.core.mi.heldout_mi`), run every `train.heldout_mi_every`
    evaluations."""

    width: int = Field(64, ge=1)  # hidden units per layer of the fresh critic
    depth: int = Field(2, ge=1)  # hidden layers
    steps: int = Field(300, ge=1)  # Adam updates on the training sequences
    batch: int = Field(512, ge=2)  # rows per update
    lr: float = Field(0.001, gt=0)  # Adam learning rate
    test_fraction: float = Field(0.25, gt=0, lt=1)  # share of evaluation sequences held out


class MIConfig(Strict):
    weight: float = Field(0.1, ge=0)  # lambda: weight of the MI penalty in the network loss
    # the names live in study.contract.names (one list, shared with study.core.estimators and
    # study.core.mi)
    estimator: Literal[names.ESTIMATOR_NAMES] = "dv"  # type: ignore[valid-type]
    penalty: Literal[names.PENALTIES] = "pairwise"  # type: ignore[valid-type]  # K > 2 groups
    pairs: int = Field(0, ge=0)  # (time x batch) rows sampled per estimate; 0 = all
    input_noise: float = Field(0.1, ge=0)  # std of Gaussian noise added to critic inputs
    noise_mode: Literal["clean_partner", "noisy_partner"] = "clean_partner"  # docs/method.md §4.2
    ema_rate: float = Field(0.01, gt=0, le=1)  # MINE moving-average rate
    nce_block: int = Field(128, ge=2)  # InfoNCE: rows per block of negatives
    heldout: HeldoutConfig = HeldoutConfig()  # the held-out estimate `mi_heldout`


class OptimizerConfig(Strict):
    kind: Literal["rmsprop", "adam"] = "rmsprop"  # Keras semantics (study/optim.py)
    lr: float = Field(0.003, gt=0)
    rho: float = Field(0.9, gt=0, lt=1)  # RMSprop decay
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-7, gt=0)
    clip_norm: float | None = Field(4.0, gt=0)  # per-tensor (and per-seed) norm clip
    clip_value: float | None = Field(None, gt=0)  # element-wise clip


class CriticConfig(Strict):
    width: int = Field(512, ge=1)  # hidden units per layer
    depth: int = Field(2, ge=1)  # hidden layers
    activation: Literal["relu", "leaky_relu"] = "relu"
    leaky_slope: float = Field(0.25, ge=0, lt=1)
    out_bias: bool = True
    precision: Literal["float32", "bfloat16"] = "float32"  # matmuls; bf16 keeps fp32 accum
    steps: int = Field(10, ge=0)  # critic updates per network update
    pretrain_steps: int = Field(100, ge=0)
    reuse_batch: bool = False  # one no-grad batch for all `steps` updates (cheap preset trick)
    optim: OptimizerConfig = OptimizerConfig()


class NetOptimConfig(OptimizerConfig):
    lr: float = Field(0.002, gt=0)
    # explicit penalty added to the loss, c * sum(w^2) or c * sum|w|
    reg: Literal["l2", "l1"] = "l2"
    reg_in: float = Field(0.01, ge=0)
    reg_rec: float = Field(0.01, ge=0)
    reg_out: float = Field(0.01, ge=0)


class TrainConfig(Strict):
    epochs: int = Field(1000, ge=0)
    updates_per_epoch: int = Field(1, ge=1)  # (critic steps + network step) rounds per epoch
    eval_every: int = Field(25, ge=1)  # epochs between evaluations (and Tune reports)
    eval_batch: int = Field(20, ge=1)  # sequences per evaluation batch
    final_window: int = Field(3, ge=1)  # evaluations averaged into a seed's final value
    checkpoint_every: int = Field(25, ge=1)  # epochs; a multiple of eval_every
    snapshot_every: int = Field(25, ge=0)  # epochs between weight snapshots; 0 = none
    corr_pooling: Literal["pooled", "per_sequence"] = "pooled"  # docs/method.md §17.6
    x0_std: float = Field(1.0, ge=0)  # initial state ~ N(0, x0_std^2) for network steps and evals
    critic_x0_zero: bool = True  # reference: critic batches start from x0 = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0 = leave as set by the environment
    # evaluations between held-out MI estimates (mi_heldout; also at the last); 0 = never
    heldout_mi_every: int = Field(10, ge=0)
    # null-referenced modularity: R random partitions with the designed group sizes,
    # drawn once per trial, score q_*_z; Leiden communities give q_*_found and nmi_*
    null_partitions: int = Field(200, ge=2)
    communities: bool = True
    # evaluate every time on one fixed batch (inputs, x0, noise drawn from their own seed):
    # q_func then changes only when the weights do, like q_struct, instead of carrying the
    # sampling jitter of a fresh batch (bench/bench_modularity.py measures both); the default,
    # so onsets are deterministic in the weights (false: a fresh batch per evaluation)
    eval_fixed: bool = True
    # a dense start: also evaluate every `dense_every` epochs up to epoch `dense_until`
    # (0 = no dense phase), where the onsets happen; the regular evaluations every `eval_every`
    # epochs (and checkpoints, snapshots, held-out MI) keep their cadence
    dense_until: int = Field(0, ge=0)
    dense_every: int = Field(1, ge=1)
    # the dense evaluations off the regular cadence are light: the task, Q and its z-scores and
    # the weight change only (MI, communities and specialisation NaN); false: all metrics
    dense_light: bool = True
    # evaluations between lesion measurements (lesion_* metrics, counted over every evaluation,
    # dense ones included; also at the last); 0 = never
    lesion_every: int = Field(0, ge=0)
    # evaluation epochs whose checkpoint is kept as checkpoint_<epoch>.pt beside checkpoint.pt,
    # never replaced by a later epoch's: the states other trials fork from (`init_from`)
    keep_checkpoints: tuple[Annotated[int, Field(ge=0)], ...] = ()
    # start from another trial's checkpoint (a checkpoint file, or a folder holding
    # checkpoint.pt or checkpoint/checkpoint.pt) instead of from scratch: a fork, which may
    # differ from its parent only in `intervention`, `structure_penalty` and the budget
    # (study.training.checkpoint.FORK_CHANGES); a relative path is relative to the current
    # folder (`study train`) or to the spec file (a study)
    init_from: str | None = Field(None, min_length=1, max_length=4096)


class EmergenceConfig(Strict):
    """The onset rule (analysis/outcomes.py owns it; docs/run-data.md, "Onsets").

    A metric's onset is the first evaluation from which its z-score stays >= `z` for `run`
    consecutive evaluations. The defaults come from the calibration (analysis.emergence.calibrate):
    false "function first" <= alpha and false emergence of null curves <= 5 %.
    """

    z: float = Field(DEFAULT_Z, gt=0)  # z-score an onset stretch must reach
    run: int = Field(DEFAULT_RUN, ge=1)  # consecutive evaluations that must reach it


class InterventionConfig(Strict):
    """A change of the training from epoch `at` on (study.training.interventions).

    The intervention acts on every network update after the evaluation at epoch `at` (the
    updates of epochs at + 1, at + 2, ...); until then the trial is the same network, bit for
    bit, as the trial without it. With `at: func_onset` each seed switches on its own, at the
    evaluation that decides its functional timing onset (study.contract.rise.confirm_online on
    q_func_z: detectable under `emergence`, its half-rise resolved and fixed, from the
    evaluations so far only), so λ and the frozen entries are per seed.
    """

    at: Annotated[int, Field(ge=0)] | Literal[names.FUNC_ONSET] | None = None  # type: ignore[valid-type]
    mi_weight: float | None = Field(None, ge=0)  # λ from `at` on; 0 switches the penalty off
    # parameter roles that stop training from `at` on (names.FREEZE_ROLES); one role or a list
    freeze: tuple[Literal[names.FREEZE_ROLES], ...] = ()  # type: ignore[valid-type]
    # from `at` on the penalty (critics, metrics) acts on another partition with the same sizes
    swap_partition: bool = False

    @field_validator("freeze", mode="before")
    @classmethod
    def _one_role(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @property
    def active(self) -> bool:
        """Whether the trial has an intervention (`at` is set)."""
        return self.at is not None


class StructurePenaltyConfig(Strict):
    """The structure-only arm: c · Σ |W_rec[i, j]| over the between-group entries (labels of i
    and j differ) of each seed's recurrent matrix, added to the network loss with no MI term
    (for the GRU over the between-group entries of all three gate blocks of U)."""

    weight: float = Field(0.0, ge=0)  # c; 0 = off
