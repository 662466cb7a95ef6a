"""Prefix-shared forward: the prompt of a pair is run once, both completions attend to it.

A batch of B pairs (chosen rows stacked over rejected rows, ``(2B, T)``, right-padded, the
prompt being the first ``prompt_length`` tokens of both rows) is packed into B rows::

    [ left padding | prompt | chosen (padded to Cc) | rejected (padded to Cr) ]

with a 4D attention mask in which every token sees the prompt and its own completion causally,
and the rejected tokens never see the chosen ones, and with ``position_ids`` that restart at the
prompt length for the rejected completion. Each token therefore sees exactly what it sees in the
concatenated forward, at the same positions, so the log-probabilities are the same up to float
rounding; the prompt tokens (most of a GOQA pair) are computed once instead of twice.

The prompt is left-aligned to end at the same column in every row, so the logits needed (the
last prompt position, which predicts the first token of both completions, and the completion
positions) are the last ``1 + Cc + Cr`` columns: the LM head runs only there
(``logits_to_keep``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grpo_lightning.core.logprobs import IGNORE_INDEX

# Model families whose decoder accepts a custom 4D mask with explicit position_ids (rotary
# positions, no learned absolute table that would need contiguous positions).
PREFIX_SHARING_MODEL_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo", "olmo2", "granite"}
)
SUPPORTED_ATTENTION = frozenset({"sdpa", "eager"})


def prefix_sharing_support(model: torch.nn.Module) -> tuple[bool, str]:
    """Whether ``model`` can run the packed prefix-shared forward, and why (for the log line)."""
    config = getattr(model, "config", None)
    if config is None:
        return False, "the model has no Hugging Face config"
    model_type = getattr(config, "model_type", None)
    if model_type not in PREFIX_SHARING_MODEL_TYPES:
        return False, f"model_type {model_type!r} is not a supported (Llama-family) decoder"
    attn = getattr(config, "_attn_implementation", None) or "eager"
    if attn not in SUPPORTED_ATTENTION:
        return False, f"attention implementation {attn!r} takes no custom 4D mask (sdpa or eager do)"
    return True, f"{model_type} with {attn} attention"


@dataclass
class PackedPairs:
    """The packed batch and where to read the log-probs from."""

    input_ids: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, 1, L, L), bool (True = attend) or additive float
    chosen_labels: torch.Tensor  # (B, Cc), IGNORE_INDEX where absent
    rejected_labels: torch.Tensor  # (B, Cr)
    keep: int  # logits_to_keep = 1 + Cc + Cr


def pack_pairs(batch: dict[str, torch.Tensor], *, mask_dtype: torch.dtype | None = None) -> PackedPairs:
    """Pack a collated batch of pairs (see the module docstring). ``mask_dtype=None`` gives a
    boolean mask (sdpa); a float dtype gives an additive mask (eager attention)."""
    ids, attn, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    n = ids.shape[0] // 2
    device = ids.device
    plen = batch["prompt_length"].to(device)
    lengths = attn.sum(-1)
    c_len, r_len = lengths[:n] - plen, lengths[n:] - plen
    # Host-side sizes of the packed layout (one sync for the three maxima).
    p_max, cc, cr = (int(v) for v in torch.stack([plen.max(), c_len.max(), r_len.max()]).tolist())
    cc, cr = max(cc, 1), max(cr, 1)
    width = p_max + cc + cr
    col = torch.arange(width, device=device)

    # Source column (in the chosen or the rejected row) of every packed column, and validity.
    j = col[:p_max]
    prompt_src = j.unsqueeze(0) - (p_max - plen).unsqueeze(1)  # (B, P)
    prompt_ok = prompt_src >= 0
    k_c = torch.arange(cc, device=device)
    k_r = torch.arange(cr, device=device)
    chosen_src = plen.unsqueeze(1) + k_c  # (B, Cc)
    chosen_ok = k_c.unsqueeze(0) < c_len.unsqueeze(1)
    rejected_src = plen.unsqueeze(1) + k_r
    rejected_ok = k_r.unsqueeze(0) < r_len.unsqueeze(1)

    def take(rows: torch.Tensor, src: torch.Tensor, ok: torch.Tensor, fill: int) -> torch.Tensor:
        src = src.clamp(0, rows.shape[1] - 1)
        return torch.where(ok, rows.gather(1, src), torch.full_like(src, fill))

    pad = 0
    input_ids = torch.cat(
        [
            take(ids[:n], prompt_src, prompt_ok, pad),
            take(ids[:n], chosen_src, chosen_ok, pad),
            take(ids[n:], rejected_src, rejected_ok, pad),
        ],
        dim=1,
    )
    position_ids = torch.cat([prompt_src.clamp(min=0), chosen_src, rejected_src], dim=1)
    valid = torch.cat([prompt_ok, chosen_ok, rejected_ok], dim=1)  # (B, L)

    # Attention: causal over the packed columns, only valid keys, rejected never sees chosen.
    causal = col.unsqueeze(1) >= col.unsqueeze(0)  # (L_q, L_kv)
    is_chosen = (col >= p_max) & (col < p_max + cc)
    is_rejected = col >= p_max + cc
    hide = is_rejected.unsqueeze(1) & is_chosen.unsqueeze(0)
    allowed = (causal & ~hide).unsqueeze(0) & valid.unsqueeze(1)  # (B, L_q, L_kv)
    # Padding queries attend to themselves only, so no row is all-masked (NaN-free softmax).
    allowed = allowed | torch.eye(width, dtype=torch.bool, device=device).unsqueeze(0)
    mask = allowed.unsqueeze(1)
    if mask_dtype is not None:
        mask = torch.zeros(mask.shape, dtype=mask_dtype, device=device).masked_fill_(~mask, torch.finfo(mask_dtype).min)

    return PackedPairs(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=mask,
        chosen_labels=take(labels[:n], chosen_src, chosen_ok, IGNORE_INDEX),
        rejected_labels=take(labels[n:], rejected_src, rejected_ok, IGNORE_INDEX),
        keep=1 + cc + cr,
    )


def packed_logps(logits: torch.Tensor, packed: PackedPairs, *, average: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected log-probs ``(B,)`` from the kept logits ``(B, 1 + Cc + Cr, V)``.

    Kept column 0 is the last prompt position: it predicts the first token of both completions.
    Chosen token k is predicted by kept column k; rejected token k (k >= 1) by kept column
    ``Cc + k``.
    """
    cc, cr = packed.chosen_labels.shape[1], packed.rejected_labels.shape[1]
    pred_c = logits[:, :cc]
    pred_r = torch.cat([logits[:, :1], logits[:, cc + 1 : cc + cr]], dim=1)

    def logps(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nll = F.cross_entropy(
            pred.reshape(-1, pred.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
        ).view_as(labels)
        out = -nll.sum(-1)
        if average:
            out = out / (labels != IGNORE_INDEX).sum(-1).clamp(min=1)
        return out

    return logps(pred_c, packed.chosen_labels), logps(pred_r, packed.rejected_labels)
