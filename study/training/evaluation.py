"""The evaluation of a trial: every logged metric for every seed, on one batch.

`Evaluation` is built once per trial from what stays fixed (config, task, designed partition,
the null partitions of the z-scores, the schedule) and is then given, at each evaluation, what
changes: the networks, the critics, the batch, the evaluation stream, the initial recurrent
weights and the epoch. One section per family of metrics (study.contract.names) fills a dict of
(S,) tensors: task, MI (training critic and independent measurements), modularity,
specialisation, weight change, lesions. A light evaluation (a dense one off the regular
cadence, `schedule.EvalSchedule`) runs only what onsets need: task, modularity without
communities, weight change (and lesions when due); the rest is NaN.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from study.contract.names import LESIONS, curve_metrics
from study.core import communities, modularity, scores, specialization
from study.core.mi import SubgroupMI, heldout_mi, measure
from study.core.tasks import task_metric
from study.spec import TrialConfig
from study.training import streams
from study.training.schedule import EvalSchedule

__all__ = ["Evaluation", "metric_names", "recurrent_blocks"]

# the sections a light evaluation runs (the others leave their metrics NaN); lesions run
# whenever they are due
LIGHT_SECTIONS = ("task", "modularity", "change", "lesions")


def metric_names(cfg: TrialConfig) -> tuple[str, ...]:
    """Per-evaluation metric keys, in logging order (docs/run-data.md; study.contract.names)."""
    return curve_metrics(task_metric(cfg))


def recurrent_blocks(net, kind: str) -> dict[str, Tensor]:
    """The recurrent weight blocks of the population, each (S, N, N), views of its parameters.

    The leaky RNN: {"rec": W_rec}. The GRU: {"update": U_z, "reset": U_r, "candidate": U_h};
    its W_rec (`recurrent_weights`, the structural graph) is the candidate block.
    """
    if kind == "gru":
        return dict(net.gate_recurrent_weights())
    return {"rec": net.recurrent_weights()}


def rec_key(kind: str) -> str:
    """The key of W_rec among `recurrent_blocks`."""
    return "candidate" if kind == "gru" else "rec"


def _abs_cross_corr(x: Tensor, y: Tensor) -> Tensor:
    """|Pearson corr| between columns of x (S, M, N) and y (S, M, C) -> (S, N, C)."""
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    cov = torch.bmm(x.transpose(1, 2), y)
    norm = x.norm(dim=1).unsqueeze(2) * y.norm(dim=1).unsqueeze(1)
    return (cov / norm.clamp_min(1e-12)).abs()


class Evaluation:
    """The metrics of one trial's evaluations, each (S,) over the population members.

    Args:
        cfg: the trial config.
        task: the trial's task (washout, transient, metric, channels, test pool).
        labels: the designed partition, shape (N,), integers 0..K-1.
        device: the training device.
        timings: where each section's seconds are added (`eval.<section>`, and
            `eval.mi.heldout`); the Trainer's timings, so the benchmarks see one breakdown.

    Attributes:
        null_partitions: (R, N) random relabellings of `labels` keeping group sizes, drawn once
            from streams.NULL_PARTITIONS, so every evaluation scores against the same R.
        seed_values: the members' integer seeds (streams.member_seeds), which seed Leiden.
    """

    def __init__(
        self,
        cfg: TrialConfig,
        task,
        labels: np.ndarray,
        device: torch.device,
        timings: dict[str, float],
    ):
        self.cfg, self.task, self.labels, self.device = cfg, task, labels, device
        self.n_seeds = cfg.seeds
        self.timings = timings
        self.seed_values = streams.member_seeds(cfg.seed, cfg.seeds)
        self.null_partitions = modularity.random_partitions(
            labels, cfg.train.null_partitions, seed=streams.NULL_PARTITIONS.entropy(cfg.seed)
        )
        self.schedule = EvalSchedule.of(cfg.train)
        self.kind = cfg.network.kind
        self.names = metric_names(cfg)
        self.score = task_metric(cfg)
        # (N, N) True where units i and j are in different groups: the between-group blocks
        lab = torch.as_tensor(labels, device=device)
        self.between = lab[:, None] != lab[None, :]

    @torch.no_grad()
    def run(
        self,
        net,
        batch: Sequence[Tensor | None],
        *,
        mi: SubgroupMI | None,
        gen: torch.Generator,
        w_rec0: Tensor,
        epoch: int,
        rec0: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Every metric of the evaluation at `epoch`.

        Args:
            net: the population's networks.
            batch: inputs (S, T, B, I), targets (S, T', B, O), x0 (S, B, N), noise or None.
            mi: the training critics (None for a single group).
            gen: the evaluation stream's torch generator (the critics' measurement `mi`).
            w_rec0: W_rec(0), (S, N, N), for the weight-change metrics.
            rec0: the initial recurrent blocks (`recurrent_blocks` at epoch 0); W_rec's entry
                is `w_rec0` whatever is given. Without it the GRU's gate-block changes are NaN.

        Returns:
            metric name -> (S,) tensor, every name of `metric_names(cfg)`; NaN for what this
            evaluation does not compute (light evaluations, lesions not due).
        """
        inputs, targets, x0, noise = batch
        out = net(inputs, x0, noise, n_transient=self.task.transient)
        w = self.task.washout
        pred, tgt = out.outputs[:, w:], targets[:, w:]
        rec0 = {**(rec0 or {}), rec_key(self.kind): w_rec0}
        res: dict[str, Tensor] = {}
        light = self.schedule.is_light(epoch)
        heldout = self.heldout_due(epoch)
        sections = (
            ("task", lambda: self.task_metrics(out, pred, tgt, res)),
            (
                "mi",
                lambda: self.mi_metrics(out, res, mi=mi, gen=gen, epoch=epoch, heldout=heldout),
            ),
            ("modularity", lambda: self.modularity_metrics(net, out, w_rec0, res, light=light)),
            ("specialisation", lambda: self.specialisation_metrics(net, out, pred, tgt, res)),
            ("change", lambda: self.change_metrics(net, rec0, res)),
            ("lesions", lambda: self.lesion_metrics(net, batch, rec0, res)),
        )
        for name, section in sections:
            if (light and name not in LIGHT_SECTIONS) or (
                name == "lesions" and not self.lesion_due(epoch)
            ):
                continue
            ts = time.perf_counter()
            section()
            key = f"eval.{name}"  # per-section cost, for the benchmark's breakdown
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - ts
        for name in self.names:  # what was skipped
            if name not in res:
                res[name] = self._nan()
        return res

    def _nan(self) -> Tensor:
        return torch.full((self.n_seeds,), float("nan"), device=self.device)

    def heldout_due(self, epoch: int) -> bool:
        """Every `train.heldout_mi_every`-th regular evaluation (the first is epoch 0: the
        regular evaluation at epoch e is the (e // eval_every)-th) and the last one."""
        every = self.cfg.train.heldout_mi_every
        sch = self.schedule
        if every == 0 or not sch.regular(epoch):
            return False
        return (epoch // sch.every) % every == 0 or epoch >= sch.epochs

    def lesion_due(self, epoch: int) -> bool:
        """Every `train.lesion_every`-th evaluation of the schedule (dense ones included; the
        first is epoch 0) and the last one."""
        every = self.cfg.train.lesion_every
        if every == 0:
            return False
        return self.schedule.index(epoch) % every == 0 or epoch >= self.schedule.epochs

    def _score(self, pred: Tensor, tgt: Tensor) -> Tensor:
        """The task score on the scored steps: accuracy (WM) or R² averaged over outputs."""
        if self.task.metric == "accuracy":
            return scores.accuracy(pred, tgt)
        return scores.r2(pred, tgt).mean(dim=-1)

    def _functional(self, out) -> Tensor:
        """The functional graph |corr| of the evaluation activity, (S, N, N)."""
        if self.cfg.train.corr_pooling == "pooled":
            return modularity.functional_adjacency(out.rows())
        # mean |corr| over sequences (separation reference, docs/method.md §10.2)
        return modularity.functional_adjacency(out.states.transpose(1, 2)).mean(dim=1)

    def task_metrics(self, out, pred: Tensor, tgt: Tensor, res: dict[str, Tensor]) -> None:
        """TASK metrics: the loss, and accuracy (WM) or R² (separation), on the scored steps
        (after the washout) only."""
        res["task_loss"] = (pred - tgt).square().mean(dim=(1, 2, 3))
        res[self.score] = self._score(pred, tgt)

    def mi_metrics(
        self,
        out,
        res: dict[str, Tensor],
        *,
        mi: SubgroupMI | None,
        gen: torch.Generator,
        epoch: int,
        heldout: bool,
    ) -> None:
        """MI_METRICS: the training critic's value, and measurements each with its null floor.

        `mi` is the training critic's objective right after the network's update (in
        clean_partner mode it includes a KL term, so it is not an MI estimate). `mi_gauss` is the
        Gaussian plug-in of the penalty on the noisy activity the penalty sees (σ² =
        `mi.input_noise`² on the covariance diagonal); `mi_heldout` a fresh critic scored on
        held-out sequences (when `heldout`: every `train.heldout_mi_every` evaluations and at
        the last, else NaN). Each `*_null` is the same estimator on the sequence-shuffled
        pairing (`measure.sequence_null`), its floor for independent groups with the same
        autocorrelation.
        """
        cfg = self.cfg
        nan = self._nan
        res["mi"] = (
            mi.measure(out.rows(), gen, transform=out.mi_transform) if mi is not None else nan()
        )
        if cfg.partition.groups < 2:
            res.update(
                mi_gauss=nan(), mi_gauss_null=nan(), mi_heldout=nan(), mi_heldout_null=nan()
            )
            return
        sigma, kind = cfg.mi.input_noise, cfg.mi.penalty
        seqs = out.activity()  # (S, T, B, N) rates
        flat = seqs.reshape(self.n_seeds, -1, seqs.shape[-1])
        res["mi_gauss"] = measure.gaussian_penalty(flat, self.labels, kind, noise=sigma)
        null = measure.sequence_null(seqs, self.labels)
        res["mi_gauss_null"] = (
            nan()
            if null is None
            else measure.gaussian_penalty(null.reshape(flat.shape), self.labels, kind, noise=sigma)
        )
        res["mi_heldout"], res["mi_heldout_null"] = nan(), nan()
        if heldout:
            t0 = time.perf_counter()
            h = cfg.mi.heldout
            res["mi_heldout"], res["mi_heldout_null"] = heldout_mi(
                seqs,
                self.labels,
                penalty=kind,
                noise=sigma,
                width=h.width,
                depth=h.depth,
                steps=h.steps,
                batch=h.batch,
                lr=h.lr,
                test_fraction=h.test_fraction,
                seed=streams.heldout_mi_seed(cfg.seed, epoch),
            )
            self.timings["eval.mi.heldout"] = (
                self.timings.get("eval.mi.heldout", 0.0) + time.perf_counter() - t0
            )

    def modularity_metrics(
        self, net, out, w_rec0: Tensor, res: dict[str, Tensor], *, light: bool = False
    ) -> None:
        """MODULARITY_METRICS: Q of the designed partition, null-referenced and partition-free.

        For |corr| (func) and |W_rec| + |W_rec|ᵀ (struct): Q, Q/Q_max, the z-score of Q
        against the trial's random partitions, and Leiden communities (their own Q and their
        NMI with the design; not when `light`); Q and z of the weight change ΔW = W_rec −
        W_rec(0); for the GRU Q and z of the update- and reset-gate recurrent blocks and of
        the sum of the three blocks |U_z| + |U_r| + |U_h| (GRU_BLOCK_METRICS).
        """
        labels, parts = self.labels, self.null_partitions
        func = self._functional(out)
        w_rec = net.recurrent_weights()
        graphs = {"func": func, "struct": modularity.structural_adjacency(w_rec)}
        for name, adj in graphs.items():
            q = modularity.modularity(adj, labels)
            res[f"q_{name}"] = q
            res[f"q_{name}_norm"] = q / modularity.modularity_max(adj, labels)
            res[f"q_{name}_z"] = modularity.modularity_zscore(adj, labels, parts)
        delta = modularity.weight_change(w_rec, w_rec0)
        res["q_struct_delta"] = modularity.modularity(delta, labels)
        res["q_struct_delta_z"] = modularity.modularity_zscore(delta, labels, parts)
        for name, adj in graphs.items():
            if light:
                continue  # Leiden is the costly part; light evaluations leave it NaN
            if self.cfg.train.communities and self.cfg.partition.groups >= 2:
                found = communities.leiden(adj, self.seed_values)
                res[f"q_{name}_found"] = communities.found_modularity(adj, found)
                res[f"nmi_{name}"] = communities.partition_nmi(found, labels)
            else:
                res[f"q_{name}_found"] = res[f"nmi_{name}"] = self._nan()
        if self.kind != "gru":
            for name in ("q_update", "q_reset", "q_update_z", "q_reset_z"):
                res[name] = self._nan()
            res["q_gru_sum"] = res["q_gru_sum_z"] = self._nan()
            return
        gates = net.gate_recurrent_weights()
        for gate in ("update", "reset"):
            adj = modularity.structural_adjacency(gates[gate])
            res[f"q_{gate}"] = modularity.modularity(adj, labels)
            res[f"q_{gate}_z"] = modularity.modularity_zscore(adj, labels, parts)
        total = sum(g.abs() for g in gates.values())  # |U_z| + |U_r| + |U_h|
        adj = modularity.structural_adjacency(total)
        res["q_gru_sum"] = modularity.modularity(adj, labels)
        res["q_gru_sum_z"] = modularity.modularity_zscore(adj, labels, parts)

    def change_metrics(self, net, rec0: Mapping[str, Tensor], res: dict[str, Tensor]) -> None:
        """WEIGHT_CHANGE_METRICS, and the GRU's per-block changes (GRU_BLOCK_METRICS).

        On W_rec (the GRU: U_h) and W_rec(0): the block contrast D of d = |W(t)| − |W(0)|
        (`dw_block`, mean within-group minus mean between-group change of magnitude) and its
        z-score against the trial's random partitions (`dw_block_z`; > 0: within grew or
        between shrank, relative to each other); the decomposition of the within- and the
        between-group blocks on W(0) (`w_<block>_ratio`, `_proj`, `_orth`). For the GRU also
        D and z of U_z, U_r and of the summed change of the three blocks.
        """
        labels, parts = self.labels, self.null_partitions
        blocks = recurrent_blocks(net, self.kind)
        key = rec_key(self.kind)
        w, w0 = blocks[key], rec0[key]
        d = modularity.magnitude_change(w, w0)
        res["dw_block"] = modularity.block_contrast(d, labels)
        res["dw_block_z"] = modularity.block_contrast_zscore(d, labels, parts)
        for part, value in modularity.block_decomposition(w, w0, labels).items():
            res[f"w_{part}"] = value
        gru_names = ("update", "reset", "gru_sum")
        if self.kind != "gru" or any(b not in rec0 for b in blocks):
            for name in gru_names:
                res[f"dw_block_{name}"] = res[f"dw_block_{name}_z"] = self._nan()
            return
        changes = {b: modularity.magnitude_change(blocks[b], rec0[b]) for b in blocks}
        changes["gru_sum"] = sum(changes.values())
        for name in gru_names:
            res[f"dw_block_{name}"] = modularity.block_contrast(changes[name], labels)
            res[f"dw_block_{name}_z"] = modularity.block_contrast_zscore(
                changes[name], labels, parts
            )

    def lesion_metrics(
        self,
        net,
        batch: Sequence[Tensor | None],
        rec0: Mapping[str, Tensor],
        res: dict[str, Tensor],
    ) -> None:
        """LESIONS: the task score and q_func_z of a copy of the networks whose recurrent
        weights (the leaky W_rec; every block U_z, U_r, U_h of the GRU) are lesioned:
        `zero_between` sets the between-group entries to 0, `reset_between` resets them to
        their initial values, `reset_rec` resets the whole matrix to W(0). Each runs on the
        evaluation's own batch (inputs, x0 and noise; the fixed batch with `train.eval_fixed`),
        so the three are paired with the intact metrics and draw no random number; the
        training networks are never touched.
        """
        inputs, targets, x0, noise = batch
        lesioned = copy.deepcopy(net)
        blocks = recurrent_blocks(lesioned, self.kind)
        trained = {b: w.detach().clone() for b, w in blocks.items()}
        between = self.between
        w_ = self.task.washout
        for lesion in LESIONS:
            for b, w in blocks.items():
                init = rec0.get(b, trained[b])  # a block without W(0) is left as trained
                if lesion == "zero_between":
                    w.copy_(torch.where(between, torch.zeros_like(w), trained[b]))
                elif lesion == "reset_between":
                    w.copy_(torch.where(between, init, trained[b]))
                else:
                    w.copy_(init)
            out = lesioned(inputs, x0, noise, n_transient=self.task.transient)
            res[f"lesion_{lesion}_{self.score}"] = self._score(
                out.outputs[:, w_:], targets[:, w_:]
            )
            res[f"lesion_{lesion}_q_func_z"] = modularity.modularity_zscore(
                self._functional(out), self.labels, self.null_partitions
            )

    def specialisation_metrics(
        self, net, out, pred: Tensor, tgt: Tensor, res: dict[str, Tensor]
    ) -> None:
        """SPECIALISATION_METRICS: D_in, D_out and D_corr (specialization.specialization)."""
        task, labels = self.task, self.labels
        if task.input_channels is not None:
            strength = net.input_weights().abs().transpose(1, 2)  # (S, N, I)
            res["d_in"] = specialization.specialization(strength, labels, task.input_channels)
        else:
            res["d_in"] = self._nan()
        res["d_out"] = specialization.specialization(
            net.output_weights().abs(), labels, task.output_channels
        )
        # D_corr: unit–target correlations (WM) or unit–prediction correlations (separation)
        reference = tgt if task.metric == "accuracy" else pred
        cross = _abs_cross_corr(
            out.rows(self.task.washout), reference.reshape(self.n_seeds, -1, reference.shape[-1])
        )
        res["d_corr"] = specialization.specialization(cross, labels, task.output_channels)
