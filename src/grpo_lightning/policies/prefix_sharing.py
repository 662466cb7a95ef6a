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

With ``padding_free`` (:func:`pack_pairs_padding_free`, :func:`padding_free_logps`) each pair is
instead one unpadded segment ``[prompt | chosen | rejected]`` and segments share rows; the decoder
runs alone and the LM head only at the positions that predict a completion token.
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


def pair_lengths(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt, chosen and rejected lengths ``(B,)`` of a collated batch (chosen rows over rejected rows, each row
    the prompt then its completion, right-padded)."""
    n = batch["input_ids"].shape[0] // 2
    plen = batch["prompt_length"].to(batch["input_ids"].device)
    lengths = batch["attention_mask"].sum(-1)
    return plen, lengths[:n] - plen, lengths[n:] - plen


def pack_pairs(batch: dict[str, torch.Tensor], *, mask_dtype: torch.dtype | None = None) -> PackedPairs:
    """Pack a collated batch of pairs (see the module docstring). ``mask_dtype=None`` gives a
    boolean mask (sdpa); a float dtype gives an additive mask (eager attention)."""
    ids, labels = batch["input_ids"], batch["labels"]
    n, device = ids.shape[0] // 2, ids.device
    plen, c_len, r_len = pair_lengths(batch)
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


# ---------------------------------------------------------------------------------------------
# Padding-free rows
# ---------------------------------------------------------------------------------------------
# The packed layout above pads every row to the longest prompt plus the longest completions: a
# batch whose prompts have a long tail (lengths 158, 144, 140, then 116..101, answers of 2 tokens)
# is about a quarter padding, and padding costs the same FLOPs as tokens. With ``padding_free``
# (TRL's ``padding_free`` is the analogue) each pair is one unpadded segment, and short segments
# share a row.


def first_fit_decreasing(lengths: list[int]) -> tuple[list[int], list[int]]:
    """Rows of width ``max(lengths)`` for segments of ``lengths``: ``(row, offset)`` of each.

    Segments are placed longest first (ties in batch order, a stable sort), each into the first
    row with room left, else into a new row; ``offset`` is its first column. Deterministic, and
    at most one row per segment.
    """
    width = max(lengths, default=0)
    used: list[int] = []
    rows, offsets = [0] * len(lengths), [0] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((k for k, u in enumerate(used) if u + lengths[i] <= width), len(used))
        if row == len(used):
            used.append(0)
        rows[i], offsets[i] = row, used[row]
        used[row] += lengths[i]
    return rows, offsets


@dataclass
class PaddingFreePairs:
    """The padding-free batch (see :func:`pack_pairs_padding_free`) and where to read the log-probs from.

    M is the number of positions whose hidden state predicts a completion token:
    ``Σ_i 1 + (c_i - 1) + (r_i - 1)`` (the last prompt position serves both completions).
    """

    input_ids: torch.Tensor  # (R, W)
    position_ids: torch.Tensor  # (R, W)
    attention_mask: torch.Tensor  # (R, 1, W, W), bool (True = attend) or additive float
    rows: torch.Tensor  # (B,) row of pair i's segment
    offsets: torch.Tensor  # (B,) its first column
    predict: torch.Tensor  # (M,) flat index row * W + column of the predicting positions
    chosen_index: torch.Tensor  # (B, Cc) chosen token k of pair i is predicted by predict[chosen_index[i, k]]
    chosen_labels: torch.Tensor  # (B, Cc) its id, IGNORE_INDEX where absent
    rejected_index: torch.Tensor  # (B, Cr)
    rejected_labels: torch.Tensor  # (B, Cr)


def pack_pairs_padding_free(
    batch: dict[str, torch.Tensor], *, mask_dtype: torch.dtype | None = None
) -> PaddingFreePairs:
    """Pack a collated batch of B pairs into R <= B unpadded rows.

    Pair i (prompt p_i >= 1 tokens, chosen c_i, rejected r_i) is one segment of p + c + r columns::

        [ prompt 0..p-1 | chosen p..p+c-1 | rejected p..p+r-1 ]     (position_ids)

    and the segments are placed into rows of width W = max_i (p_i + c_i + r_i) by
    :func:`first_fit_decreasing`; the rest of a row is padding (position 0, token 0). The 4D mask
    lets a query see a key only in its own segment, causally over the columns, and never a chosen
    key from a rejected query; a padding query sees itself only (no all-masked softmax row). Each
    token thus sees what it sees in the concatenated forward at the same positions, as in
    :func:`pack_pairs`. ``mask_dtype=None`` gives a boolean mask (sdpa); a float dtype gives an
    additive one (eager attention).

    The predicting positions (segment columns): chosen token k by column p - 1 + k (k = 0 the
    last prompt token); rejected token 0 by column p - 1, token k >= 1 by column p + c + k - 1.
    """
    ids, labels = batch["input_ids"], batch["labels"]
    n, device = ids.shape[0] // 2, ids.device
    plen, c_len, r_len = pair_lengths(batch)
    # Host-side sizes (one sync): the row assignment is a small loop over B segments.
    p_h, c_h, r_h = torch.stack([plen, c_len, r_len]).tolist()
    if min(p_h) < 1:
        raise ValueError(
            "padding-free rows need a prompt of at least one token in every pair (it predicts the answers)"
        )
    seg = [p + c + r for p, c, r in zip(p_h, c_h, r_h, strict=True)]
    rows_h, offsets_h = first_fit_decreasing(seg)
    width, n_rows, n_tok = max(seg), max(rows_h) + 1, sum(seg)
    n_pred = sum(1 + max(c - 1, 0) + max(r - 1, 0) for c, r in zip(c_h, r_h, strict=True))
    cc, cr = max(max(c_h), 1), max(max(r_h), 1)

    def long(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    seg_t, rows, offsets = long(seg), long(rows_h), long(offsets_h)
    start = torch.cumsum(seg_t, 0) - seg_t  # (B,) first token of pair i in the flat token list
    # Every token of every segment, flat (N = Σ segment lengths): its pair and its segment column.
    pair = torch.repeat_interleave(torch.arange(n, device=device), seg_t, output_size=n_tok)
    j = torch.arange(n_tok, device=device) - start[pair]
    p, c, r = plen[pair], c_len[pair], r_len[pair]
    in_rejected = j >= p + c
    pos = torch.where(in_rejected, j - c, j)  # the position, and the column in the source row
    src_row = torch.where(in_rejected, pair + n, pair)
    dest = rows[pair] * width + offsets[pair] + j  # flat index into (R, W)
    kind = (j >= p).long() + in_rejected.long()  # 0 prompt, 1 chosen, 2 rejected

    def place(values: torch.Tensor, fill: int) -> torch.Tensor:
        return values.new_full((n_rows * width,), fill).index_copy_(0, dest, values).view(n_rows, width)

    input_ids = place(ids[src_row, pos], 0)
    position_ids = place(pos, 0)
    seg_id = place(pair, -1)
    kind = place(kind, 0)

    # Attention: own segment only, causal over columns, rejected never sees chosen.
    col = torch.arange(width, device=device)
    causal = col.unsqueeze(1) >= col.unsqueeze(0)  # (W_q, W_kv)
    same = (seg_id.unsqueeze(2) == seg_id.unsqueeze(1)) & (seg_id >= 0).unsqueeze(2)  # (R, W_q, W_kv)
    hide = (kind == 2).unsqueeze(2) & (kind == 1).unsqueeze(1)
    allowed = (same & causal & ~hide) | torch.eye(width, dtype=torch.bool, device=device)
    mask = allowed.unsqueeze(1)
    if mask_dtype is not None:
        mask = torch.zeros(mask.shape, dtype=mask_dtype, device=device).masked_fill_(~mask, torch.finfo(mask_dtype).min)

    # The predicting tokens, in flat token order; slot = their index among them (M of them).
    predicts = (j == p - 1) | ((j >= p) & (j < p + c - 1)) | ((j >= p + c) & (j < p + c + r - 1))
    slot = torch.cumsum(predicts, 0) - 1
    # Scatter without a host sync (boolean indexing would need one); non-predicting tokens land
    # in the spare slot M, dropped.
    predict = dest.new_zeros(n_pred + 1).scatter_(0, torch.where(predicts, slot, n_pred), dest)[:n_pred]

    def targets(k: torch.Tensor, length: torch.Tensor, column: torch.Tensor, rows_of: torch.Tensor):
        ok = k.unsqueeze(0) < length.unsqueeze(1)  # (B, C)
        token = (start.unsqueeze(1) + column).clamp(0, n_tok - 1)
        src = (plen.unsqueeze(1) + k).clamp(max=labels.shape[1] - 1)
        ids_k = torch.where(ok, labels[rows_of].gather(1, src), IGNORE_INDEX)
        return torch.where(ok, slot[token], 0), ids_k

    k_c, k_r = torch.arange(cc, device=device), torch.arange(cr, device=device)
    last_prompt = (plen - 1).unsqueeze(1)
    chosen_index, chosen_labels = targets(k_c, c_len, last_prompt + k_c, torch.arange(n, device=device))
    rejected_column = torch.where(k_r == 0, last_prompt, (plen + c_len).unsqueeze(1) + k_r - 1)
    rejected_index, rejected_labels = targets(k_r, r_len, rejected_column, torch.arange(n, 2 * n, device=device))
    return PaddingFreePairs(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=mask,
        rows=rows,
        offsets=offsets,
        predict=predict,
        chosen_index=chosen_index,
        chosen_labels=chosen_labels,
        rejected_index=rejected_index,
        rejected_labels=rejected_labels,
    )


def output_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The causal LM's logits of ``hidden`` ``(..., H)``: its output embedding, then what its
    ``ForCausalLM.forward`` does after it in the supported families (Granite divides by
    ``logits_scaling``; Gemma 2 and 3 soft-cap with tanh)."""
    logits = model.get_output_embeddings()(hidden)
    config = model.config
    if config.model_type == "granite":
        logits = logits / config.logits_scaling
    cap = getattr(config, "final_logit_softcapping", None) if config.model_type in ("gemma2", "gemma3_text") else None
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def padding_free_logps(
    model: torch.nn.Module, packed: PaddingFreePairs, *, average: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected log-probs ``(B,)``, in the batch's pair order, of a padding-free batch.

    The positions needed are scattered over the rows, so the decoder runs alone (``logits_to_keep``
    takes the same columns in every row) and the output embedding is applied to the M gathered
    hidden states only, each position once. ``model`` is a Hugging Face causal LM or a peft model
    around one (its LoRA layers sit inside the decoder, so ``disable_adapter`` and gradient
    checkpointing apply as in the full forward).
    """
    hidden = (
        model.get_decoder()(
            input_ids=packed.input_ids,
            attention_mask=packed.attention_mask,
            position_ids=packed.position_ids,
            use_cache=False,
        )
        .last_hidden_state.flatten(0, 1)  # (R, W, H)
        .index_select(0, packed.predict)  # (M, H)
    )
    logp = torch.log_softmax(output_logits(model, hidden).float(), dim=-1)  # (M, V), float32 as packed_logps

    def total(index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ok = labels != IGNORE_INDEX
        token = torch.where(ok, logp[index, labels.clamp(min=0)], 0.0)  # (B, C)
        out = token.sum(-1)
        if average:
            out = out / ok.sum(-1).clamp(min=1)
        return out

    return total(packed.chosen_index, packed.chosen_labels), total(packed.rejected_index, packed.rejected_labels)
