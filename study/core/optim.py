"""Keras-semantics optimisers for population-batched parameters (docs/method.md §14.1–14.3).

Every parameter has a leading replica axis (seeds, or seeds × critic pairs); each replica is a
separate model of the reference, so gradient clipping acts per tensor *and* per replica.
RMSprop: v ← ρv + (1−ρ)g², w ← w − lr·g/√(v + ε) (ε inside the root, as Keras; PyTorch puts it
outside). Adam: Keras bias-corrected step with ε outside the root.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplicaOptimizer"]


class ReplicaOptimizer:
    """RMSprop or Adam with per-replica clipping, configured by an OptimizerConfig-like object.

    Args:
        params: tensors with a leading replica axis, all with the same replica count.
        kind: "rmsprop" or "adam".
        lr, rho, beta1, beta2, eps: as in Keras.
        clip_norm: clip each replica's gradient of each tensor to this L2 norm (Keras clipnorm).
        clip_value: clip gradient elements to [−v, v] (Keras clipvalue).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        kind: str = "rmsprop",
        lr: float = 1e-3,
        rho: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-7,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        if kind not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer kind must be 'rmsprop' or 'adam', but got {kind!r}")
        self.params = list(params)
        self.kind, self.lr, self.rho, self.beta1, self.beta2, self.eps = (
            kind,
            lr,
            rho,
            beta1,
            beta2,
            eps,
        )
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.step_count = 0
        self.state: list[dict[str, Tensor]] = [self._fresh(p) for p in self.params]

    def _fresh(self, p: Tensor) -> dict[str, Tensor]:
        return {"v": torch.zeros_like(p)} | (
            {"m": torch.zeros_like(p)} if self.kind == "adam" else {}
        )

    def _follow(self) -> None:
        """Keep the state on the parameters' device (a module moved with .to() after we were
        built, e.g. SubgroupMI(...).to("cuda"))."""
        for i, p in enumerate(self.params):
            st = self.state[i]
            if st["v"].device != p.device:
                self.state[i] = {k: v.to(p.device) for k, v in st.items()}

    @classmethod
    def from_config(cls, params: Iterable[Tensor], cfg: Any) -> ReplicaOptimizer:
        return cls(
            params,
            kind=cfg.kind,
            lr=cfg.lr,
            rho=cfg.rho,
            beta1=cfg.beta1,
            beta2=cfg.beta2,
            eps=cfg.eps,
            clip_norm=cfg.clip_norm,
            clip_value=cfg.clip_value,
        )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self._follow()
        self.step_count += 1
        t = self.step_count
        for p, st in zip(self.params, self.state):
            g = p.grad
            if g is None:
                continue
            if self.clip_norm is not None:
                norms = g.flatten(1).norm(dim=1).clamp_min(1e-12)  # one norm per replica
                scale = (self.clip_norm / norms).clamp(max=1.0)
                g = g * scale.view(-1, *([1] * (g.dim() - 1)))
            if self.clip_value is not None:
                g = g.clamp(-self.clip_value, self.clip_value)
            v = st["v"]
            if self.kind == "rmsprop":
                v.mul_(self.rho).addcmul_(g, g, value=1.0 - self.rho)
                p.addcdiv_(g, (v + self.eps).sqrt_(), value=-self.lr)
            else:
                m = st["m"]
                m.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
                v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
                lr_t = self.lr * (1.0 - self.beta2**t) ** 0.5 / (1.0 - self.beta1**t)
                p.addcdiv_(m, v.sqrt().add_(self.eps), value=-lr_t)

    @torch.no_grad()
    def clear_state(self, param: Tensor, where: Tensor) -> None:
        """Zero every state entry (RMSprop's v; Adam's m and v) of `param` where `where` (bool,
        broadcastable to it) holds: an entry whose gradient stays 0 from then on is never moved
        again (RMSprop's step is lr·0/√(v + ε) = 0 and Adam's lr·m̂/(√v̂ + ε) with m = 0).

        Raises:
            ValueError: `param` is not one of this optimiser's parameters.
        """
        self._follow()
        for p, st in zip(self.params, self.state):
            if p is param:
                for v in st.values():
                    v.masked_fill_(where.to(v.device).expand_as(v), 0.0)
                return
        raise ValueError(
            f"clear_state(): the tensor of shape {tuple(param.shape)} is not a parameter of "
            f"this optimiser"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "state": [{k: v.clone() for k, v in st.items()} for st in self.state],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self._follow()
        self.step_count = int(sd["step_count"])
        for st, saved in zip(self.state, sd["state"]):
            for k, v in saved.items():
                st[k].copy_(v)
