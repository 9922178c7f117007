"""Optimisers and learning-rate schedules as the papers used them, behind registries.

TIRG and the LSTM/concat baselines: SGD with momentum and step decay, the pretrained
backbone at a fraction of the learning rate. CLIP/transformer models: AdamW with warm-up
and cosine decay. CLIP4Cir: AdamW (eps 1e-7) to fine-tune CLIP in stage 1, then Adam at a
constant learning rate for the combiner in stage 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fashion_retrieval.registry import Registry
from fashion_retrieval.training.config import TrainConfig

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[[TrainConfig], Callable[[int], float]]] = Registry("lr_schedule")


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    # The fused kernel (CPU and CUDA): one pass per tensor instead of a few small operations
    # each, about 9% of a cached-feature TIRG step on a CPU thread; the same update rule.
    fused = not torch.backends.mps.is_available()
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           fused=fused or None)


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    # Adam's weight decay is an L2 term in the gradient (torch.optim.Adam), not AdamW's.
    return torch.optim.Adam(groups, lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay)


def _warmup(config: TrainConfig, step: int) -> float:
    """Linear warm-up factor (1 when there is none)."""
    return min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0


@SCHEDULES.register("step")
def _step(config: TrainConfig) -> Callable[[int], float]:
    return lambda s: _warmup(config, s) * config.lr_decay_gamma ** (s // config.lr_decay_steps)


@SCHEDULES.register("cosine")
def _cosine(config: TrainConfig) -> Callable[[int], float]:
    def factor(s: int) -> float:
        span = max(1, config.max_steps - config.warmup_steps)
        progress = min(1.0, max(0, s - config.warmup_steps) / span)
        return _warmup(config, s) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@SCHEDULES.register("constant")
def _constant(config: TrainConfig) -> Callable[[int], float]:
    """The learning rate as configured at every step (after the optional warm-up)."""
    return lambda s: _warmup(config, s)


def param_groups(model: nn.Module, backbone: nn.Module | None, config: TrainConfig) -> list[dict]:
    """Trainable parameters split into the backbone (at ``backbone_lr_scale``) and the rest."""
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    body = [p for p in model.parameters() if p.requires_grad and id(p) in backbone_ids]
    groups = [{"params": head, "lr": config.lr, "name": "heads"}]
    if body:
        groups.append({"params": body, "lr": config.lr * config.backbone_lr_scale, "name": "backbone"})
    if not head and not body:
        raise ValueError("the model has no trainable parameters")
    return groups


def build_optimizer(
    model: nn.Module, backbone: nn.Module | None, config: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser named by ``config.optimizer`` and its ``config.lr_schedule`` scheduler."""
    groups = [g for g in param_groups(model, backbone, config) if g["params"]]
    optimizer = OPTIMIZERS.get(config.optimizer)(groups, config)
    factor = SCHEDULES.get(config.lr_schedule)(config)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
