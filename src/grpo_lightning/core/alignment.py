"""Opinion alignment: how close a model's answer distribution is to a country's survey distribution.

Not part of Ramesh et al. (2024), which reports preference losses and reward accuracies only; this is the
similarity of the Global Opinion QA paper (Durmus et al. 2023, "Towards Measuring the Representation of Subjective
Global Opinions in Language Models", §2.3): for a question with options 1..L, the model's distribution P_m over the
options and a country's distribution P_c of survey answers,

    similarity(P_m, P_c) = 1 − JSD(P_m, P_c),

where JSD is the Jensen–Shannon *distance*, the square root of the Jensen–Shannon divergence

    JS(P, Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M),   M = ½ (P + Q),   KL(P ‖ M) = Σ_i P_i log₂(P_i / M_i).

With logarithms to base 2, JS lies in [0, 1] (Lin 1991), so the distance and the similarity do too: 1 for identical
distributions, 0 for distributions with disjoint supports. (This matches ``scipy.spatial.distance.jensenshannon``
with ``base=2``; with natural logarithms the distance would top out at √ln 2 ≈ 0.83.) Terms with P_i = 0 are 0
(0 · log 0 = 0, via :func:`torch.xlogy`).

The model's distribution over the options is the next-token distribution after the prompt, restricted to the tokens
of the option letters and renormalised (Durmus et al. read the letter probabilities the same way):

    P_m(i) = p(ℓ_i | x) / Σ_j p(ℓ_j | x) = exp(z_i) / Σ_j exp(z_j),

with z the next-token logits, so the renormalised probabilities are a softmax over the letters' logits alone (the
log-partition of the full vocabulary cancels).

Everything takes ``(..., L)`` tensors padded to a common number of options with a boolean ``mask``; padded entries
get probability 0 on both sides and contribute nothing.
"""

from __future__ import annotations

import torch


def letter_distribution(letter_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """P_m(i) = softmax over the option letters' next-token logits, 0 on padding: ``(..., L)`` → ``(..., L)``.

    Computed in float64 so that the alignment of nearly identical distributions is not lost to rounding.
    """
    z = letter_logits.to(torch.float64)
    if mask is not None:
        z = z.masked_fill(~mask.to(torch.bool), float("-inf"))
    return torch.softmax(z, dim=-1)


def normalise(shares: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Survey shares → a distribution (GOQA's shares need not sum exactly to 1); 0 on padding."""
    q = shares.to(torch.float64)
    if mask is not None:
        q = q.masked_fill(~mask.to(torch.bool), 0.0)
    return q / q.sum(dim=-1, keepdim=True)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JS(P, Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M) with M = ½(P + Q) and **base-2** logarithms, in [0, 1]. ``(..., L)`` → ``(...)``.

    P and Q must be distributions over the last dimension (padding: 0 in both).
    """
    p, q = p.to(torch.float64), q.to(torch.float64)
    m = 0.5 * (p + q)
    # xlogy(p, p/m) = p·ln(p/m), 0 where p = 0 (then m may be 0 too: the 0/0 is masked out by the 0 factor).
    safe_m = torch.where(m > 0, m, torch.ones_like(m))
    kl_pm = torch.xlogy(p, p / safe_m).sum(-1)
    kl_qm = torch.xlogy(q, q / safe_m).sum(-1)
    return (0.5 * (kl_pm + kl_qm) / torch.log(torch.tensor(2.0, dtype=torch.float64))).clamp(0.0, 1.0)


def js_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon distance √JS(P, Q) (base 2, so in [0, 1]); a metric on distributions (Endres & Schindelin 2003)."""
    return js_divergence(p, q).sqrt()


def opinion_alignment(
    letter_logits: torch.Tensor, shares: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """1 − JSD(P_m, P_c) per question (Durmus et al. 2023): ``(..., L)`` letter logits and survey shares → ``(...)``.

    Args:
        letter_logits: next-token logits at the option letters' token ids, after the prompt.
        shares: the country's survey shares of the options (renormalised here).
        mask: ``True`` for real options, ``False`` for padding (questions with fewer options).
    """
    return 1.0 - js_distance(letter_distribution(letter_logits, mask), normalise(shares, mask))
