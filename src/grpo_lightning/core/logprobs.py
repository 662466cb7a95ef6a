"""Log-probabilities of completions under a causal language model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def completion_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    average: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum (or per-token mean) of log π(y_t | x, y_<t) over the completion tokens.

    Token ``t`` is predicted by the logits at position ``t - 1``, so logits and labels are
    shifted by one. Positions whose label is ``ignore_index`` (the prompt and the padding)
    contribute nothing.

    Args:
        logits: ``(B, T, V)`` next-token logits.
        labels: ``(B, T)`` token ids, ``ignore_index`` on prompt and padding positions.
        average: per-token mean instead of the sum (the sum is log π(y|x), the paper's
            quantity; the mean is the length-normalised variant of SimPO/IPO codebases).
        ignore_index: label value that marks masked positions.

    Returns:
        ``(logps, n_tokens)``, both ``(B,)``: the sequence log-probability (float32) and
        the number of completion tokens. A row with no completion token gets log-prob 0
        (sum) or 0 (mean), never NaN.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (B, T)")
    shifted_logits = logits[:, :-1, :]
    shifted_labels = labels[:, 1:]
    # cross_entropy on the flattened view avoids materialising a (B, T, V) log-softmax copy
    # and returns exactly 0 at ignored positions.
    token_nll = F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)).float(),
        shifted_labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
    ).view_as(shifted_labels)
    n_tokens = (shifted_labels != ignore_index).sum(-1)
    logps = -token_nll.sum(-1)
    if average:
        logps = logps / n_tokens.clamp(min=1)
    return logps, n_tokens
