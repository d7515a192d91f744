"""AdamW with the original's param-wise rules, and its learning-rate schedule (docs/design.md#optimiser-and-schedule).

Re-written from mmcv 1.3.8 (DefaultOptimizerConstructor custom_keys, PolyLrUpdaterHook /
FixedLrUpdaterHook with linear warm-up) because the exact matching rule and formulas are what must be kept.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from hfan.config import OptimizerConfig, ParamRule, ScheduleConfig

DEFAULT_GROUP = "default"


def match_rule(parameter_name: str, keys: list[str] | tuple[str, ...]) -> str | None:
    """mmcv custom_keys: keys tried longest first (ties alphabetically); the first substring of the
    full parameter name wins and its multipliers replace the defaults entirely."""
    for key in sorted(sorted(keys), key=len, reverse=True):
        if key in parameter_name:
            return key
    return None


def build_param_groups(model: nn.Module, base_lr: float, weight_decay: float,
                       rules: Mapping[str, ParamRule]) -> list[dict]:
    """One group per rule that names at least one trainable parameter, plus the default group.

    mmcv makes one group per parameter; grouping those with equal settings gives the same updates.
    Each group carries `name` (the rule key or "default") and `param_names`.
    """
    groups: dict[str, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue  # frozen parameters need no optimiser state
        key = match_rule(name, tuple(rules))
        rule = rules[key] if key is not None else ParamRule()
        group = groups.setdefault(key or DEFAULT_GROUP, {
            "name": key or DEFAULT_GROUP, "params": [], "param_names": [],
            "lr": base_lr * rule.lr_mult, "weight_decay": weight_decay * rule.decay_mult,
        })
        group["params"].append(parameter)
        group["param_names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.AdamW:
    groups = build_param_groups(model, cfg.lr, cfg.weight_decay, cfg.paramwise.as_dict())
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def lr_at(iteration: int, base_lr: float, schedule: ScheduleConfig, max_iters: int) -> float:
    """Learning rate of a group with initial rate `base_lr` at iteration `iteration` (0-based), as mmcv's
    hook sets it before that iteration: poly `(base - min) * (1 - t/T)^power + min` or fixed `base`, times
    the linear warm-up factor `1 - (1 - t/W) * (1 - ratio)` while t < W."""
    if schedule.policy == "poly":
        lr = (base_lr - schedule.min_lr) * (1 - iteration / max_iters) ** schedule.power + schedule.min_lr
    elif schedule.policy == "fixed":
        lr = base_lr
    else:
        raise ValueError(f"unknown schedule.policy {schedule.policy!r}; valid: poly, fixed")
    if schedule.warmup == "linear" and iteration < schedule.warmup_iters:
        lr *= 1 - (1 - iteration / schedule.warmup_iters) * (1 - schedule.warmup_ratio)
    return lr


class IterationLR(LRScheduler):
    """`lr_at` as a torch scheduler: call `step()` once per optimiser step. The rate of iteration t is
    computed in closed form, so `state_dict`/`load_state_dict` resume it exactly."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, max_iters: int,
                 last_epoch: int = -1):
        # Plain fields (not the dataclass) so that the state dict loads with torch.load(weights_only=True).
        self.schedule_fields = dict(vars(schedule))
        self.max_iters = max_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        schedule = ScheduleConfig(**self.schedule_fields)
        return [lr_at(self.last_epoch, base, schedule, self.max_iters) for base in self.base_lrs]


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, max_iters: int) -> IterationLR:
    return IterationLR(optimizer, schedule, max_iters)
