"""What the LightningModule needs from a policy: log π of the chosen and rejected answers.

A *policy spec* is the configuration (chosen in YAML by ``class_path``); ``build`` turns it into
a :class:`PreferencePolicy`, an ``nn.Module`` holding the trainable policy and its frozen
reference. The same LightningModule therefore trains a causal LM or the paper's log-linear
bandit policy.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn


class PreferencePolicy(nn.Module):
    """A trainable policy π_θ and its frozen reference π_ref.

    Subclasses implement :meth:`pair_logps` and :meth:`reference_pair_logps`, both mapping a
    collated batch to ``(chosen_logps, rejected_logps)``, each ``(B,)``.
    """

    def pair_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def reference_pair_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class PolicySpec:
    """Base of policy configurations. Subclasses store their init arguments in ``init_args``
    (so a checkpoint records them as plain data) and implement :meth:`build`."""

    def __init__(self, **init_args: Any) -> None:
        self.init_args = init_args

    def build(self, tokenizer: Any | None) -> PreferencePolicy:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self.init_args)}

    @staticmethod
    def from_dict(data: dict[str, Any] | PolicySpec) -> PolicySpec:
        """Rebuild a spec from :meth:`to_dict` output (as stored in checkpoint hyperparameters)."""
        if isinstance(data, PolicySpec):
            return data
        module_name, _, name = data["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        if not (isinstance(cls, type) and issubclass(cls, PolicySpec)):
            raise TypeError(f"{data['class_path']} is not a PolicySpec")
        return cls(**data.get("init_args", {}))


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the reference never trains (Ramesh et al. 2024, eq. 2)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def disable_dropout(module: nn.Module) -> None:
    """Dropout off in policy and reference, so log π and log π_ref of the same weights agree
    and the α pre-pass sees the same losses as the gradient pass (TRL does the same)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
