"""The policy module of a Hugging Face causal LM: per-pair log-probabilities under π_θ and π_ref, through the
concatenated, the prefix-shared or the padding-free forward (built by :class:`~grpo_lightning.policies.CausalLM`)."""

from __future__ import annotations

import torch
from torch import nn

from grpo_lightning.core.logprobs import completion_logps
from grpo_lightning.policies.base import PreferencePolicy
from grpo_lightning.policies.prefix_sharing import (
    pack_pairs,
    pack_pairs_padding_free,
    packed_logps,
    padding_free_logps,
)


class CausalLMPolicyModule(PreferencePolicy):
    """π_θ = ``model``; π_ref = ``reference`` (a frozen copy of the initial weights), or, with
    ``adapter_reference`` (LoRA), ``model`` with its adapter disabled.

    ``prefix_sharing`` runs each pair's prompt once for both completions
    (:mod:`grpo_lightning.policies.prefix_sharing`), in the policy and the reference forward;
    ``padding_free`` (with it only) packs the pairs as unpadded segments sharing rows.
    """

    def __init__(
        self,
        model: nn.Module,
        reference: nn.Module | None,
        *,
        average_log_prob: bool,
        prefix_sharing: bool = False,
        adapter_reference: bool = False,
        padding_free: bool = False,
    ) -> None:
        super().__init__()
        if padding_free and not prefix_sharing:
            raise ValueError("padding_free packs the prefix-shared forward: it needs prefix_sharing")
        self.model = model
        self.reference = reference
        self.average_log_prob = average_log_prob
        self.prefix_sharing = prefix_sharing
        self.adapter_reference = adapter_reference
        self.padding_free = padding_free
        attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
        self._mask_dtype = None if attn == "sdpa" else next(model.parameters()).dtype

    def train(self, mode: bool = True) -> CausalLMPolicyModule:
        # Lightning calls .train() on the whole LightningModule; the reference stays in eval.
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()
        return self

    @property
    def has_reference(self) -> bool:
        return self.reference is not None or self.adapter_reference

    def free_reference(self) -> None:
        """Drop the reference copy (its log-probs come from a cache instead)."""
        self.reference = None

    def _logps(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # A batch without prompt lengths (built by hand, not by PairCollator) takes the plain path.
        if self.prefix_sharing and "prompt_length" in batch:
            if self.padding_free:
                free = pack_pairs_padding_free(batch, mask_dtype=self._mask_dtype)
                return padding_free_logps(model, free, average=self.average_log_prob)
            packed = pack_pairs(batch, mask_dtype=self._mask_dtype)
            logits = model(
                input_ids=packed.input_ids,
                attention_mask=packed.attention_mask,
                position_ids=packed.position_ids,
                use_cache=False,
                # Positions as a tensor, not a count: the model then gathers them into a contiguous
                # (B, keep, h) tensor and the LM head is one matmul; with a count it slices a strided
                # view, which matmul runs as a batched product over a copy of the head's weight per
                # row (measured with SmolLM2-135M: 16 copies of its 113 MB embedding matrix).
                logits_to_keep=torch.arange(
                    packed.input_ids.shape[1] - packed.keep, packed.input_ids.shape[1], device=packed.input_ids.device
                ),
            ).logits
            return packed_logps(logits, packed, average=self.average_log_prob)
        # One forward over chosen and rejected stacked on the batch dimension (2B, T).
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logps, _ = completion_logps(logits, batch["labels"], average=self.average_log_prob)
        chosen, rejected = logps.chunk(2)
        return chosen, rejected

    def pair_logps(self, batch):
        return self._logps(self.model, batch)

    @torch.no_grad()
    def reference_pair_logps(self, batch):
        if self.adapter_reference:
            with self.model.disable_adapter():
                return self._logps(self.model, batch)
        if self.reference is None:
            raise RuntimeError("this policy has no reference model (built without one, or freed for cached log-probs)")
        return self._logps(self.reference, batch)

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """The reference weights (for the reference log-prob cache key)."""
        if self.adapter_reference:
            return {k: v for k, v in self.model.state_dict().items() if "lora_" not in k}
        if self.reference is None:
            raise RuntimeError("this policy has no reference model")
        return self.reference.state_dict()
