"""The evaluation of a trial: every logged metric for every seed, on one batch.

`Evaluation` is built once per trial from what stays fixed (config, task, designed partition,
the null partitions of the z-scores) and is then given, at each evaluation, what changes: the
networks, the critics, the batch, the evaluation stream, W_rec(0) and the epoch. One section per
family of metrics (study.contract.names) fills a dict of (S,) tensors: task, MI (training critic
and independent measurements), modularity, specialisation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from study.contract.names import curve_metrics
from study.core import communities, modularity, scores, specialization
from study.core.mi import SubgroupMI, heldout_mi, measure
from study.core.tasks import task_metric
from study.spec import TrialConfig
from study.training import streams

__all__ = ["Evaluation", "metric_names"]


def metric_names(cfg: TrialConfig) -> tuple[str, ...]:
    """Per-evaluation metric keys, in logging order (docs/run-data.md; study.contract.names)."""
    return curve_metrics(task_metric(cfg))


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
        index: int,
    ) -> dict[str, Tensor]:
        """Every metric of the evaluation at `epoch`, the `index`-th of the trial (from 0).

        Args:
            net: the population's networks.
            batch: inputs (S, T, B, I), targets (S, T', B, O), x0 (S, B, N), noise or None.
            mi: the training critics (None for a single group).
            gen: the evaluation stream's torch generator (the critics' measurement `mi`).
            w_rec0: W_rec(0), (S, N, N), for the weight-change metrics.

        Returns:
            metric name -> (S,) tensor, every name of `metric_names(cfg)`.
        """
        inputs, targets, x0, noise = batch
        out = net(inputs, x0, noise, n_transient=self.task.transient)
        w = self.task.washout
        pred, tgt = out.outputs[:, w:], targets[:, w:]
        res: dict[str, Tensor] = {}
        heldout = self.heldout_due(index, epoch)
        sections = (
            ("task", lambda: self.task_metrics(out, targets, pred, tgt, res)),
            (
                "mi",
                lambda: self.mi_metrics(out, res, mi=mi, gen=gen, epoch=epoch, heldout=heldout),
            ),
            ("modularity", lambda: self.modularity_metrics(net, out, w_rec0, res)),
            ("specialisation", lambda: self.specialisation_metrics(net, out, pred, tgt, res)),
        )
        for name, section in sections:
            ts = time.perf_counter()
            section()
            key = f"eval.{name}"  # per-section cost, for the benchmark's breakdown
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - ts
        return res

    def _nan(self) -> Tensor:
        return torch.full((self.n_seeds,), float("nan"), device=self.device)

    def heldout_due(self, index: int, epoch: int) -> bool:
        """Every `train.heldout_mi_every`-th evaluation (the first is 0) and the last one."""
        every = self.cfg.train.heldout_mi_every
        if every == 0:
            return False
        return index % every == 0 or epoch >= self.cfg.train.epochs

    def task_metrics(
        self, out, targets: Tensor, pred: Tensor, tgt: Tensor, res: dict[str, Tensor]
    ) -> None:
        """TASK metrics: the loss, and accuracy (WM) or R² (separation)."""
        res["task_loss"] = (pred - tgt).square().mean(dim=(1, 2, 3))
        if self.task.metric == "accuracy":
            res["accuracy"] = scores.accuracy(pred, tgt)
        else:
            res["r2"] = scores.r2(out.outputs, targets).mean(dim=-1)  # over all steps

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

    def modularity_metrics(self, net, out, w_rec0: Tensor, res: dict[str, Tensor]) -> None:
        """MODULARITY_METRICS: Q of the designed partition, null-referenced and partition-free.

        For |corr| (func) and |W_rec| + |W_rec|ᵀ (struct): Q, Q/Q_max, the z-score of Q
        against the trial's random partitions, and Leiden communities (their own Q and their
        NMI with the design); Q and z of the weight change ΔW = W_rec − W_rec(0); for the GRU
        the z-scored Q of the update- and reset-gate recurrent blocks.
        """
        labels, parts = self.labels, self.null_partitions
        if self.cfg.train.corr_pooling == "pooled":
            func = modularity.functional_adjacency(out.rows())
        else:  # mean |corr| over sequences (separation reference, docs/method.md §10.2)
            func = modularity.functional_adjacency(out.states.transpose(1, 2)).mean(dim=1)
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
            if self.cfg.train.communities and self.cfg.partition.groups >= 2:
                found = communities.leiden(adj, self.seed_values)
                res[f"q_{name}_found"] = communities.found_modularity(adj, found)
                res[f"nmi_{name}"] = communities.partition_nmi(found, labels)
            else:
                res[f"q_{name}_found"] = res[f"nmi_{name}"] = self._nan()
        gates = net.gate_recurrent_weights() if self.cfg.network.kind == "gru" else {}
        for gate in ("update", "reset"):
            res[f"q_{gate}_z"] = (
                modularity.modularity_zscore(
                    modularity.structural_adjacency(gates[gate]), labels, parts
                )
                if gate in gates
                else self._nan()
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
