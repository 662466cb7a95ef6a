"""The embedded default data: a generated "group opinions" set shaped like Global Opinion QA.

Nothing is downloaded and nothing large is committed: the rows are a deterministic function of
the seed. Five groups of very different sizes (≈ 45/25/15/10/5 %) answer the same multiple-choice
questions; each group prefers one option per question. The largest group's preferred option is
drawn at random; a smaller group disagrees with it more often (0 %, 20 %, 45 %, 70 %, 95 % of the
questions), so the smallest group is the one a pooled objective serves worst — the situation
group-robust training is for (Ramesh et al. 2024, §5.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grpo_lightning.data.prompts import LETTERS, format_prompt

GROUPS = ("Avalon", "Brightwater", "Cedarholm", "Dunmore", "Eastvale")
SHARES = (0.45, 0.25, 0.15, 0.10, 0.05)
DISAGREEMENT = (0.0, 0.2, 0.45, 0.7, 0.95)

_SUBJECTS = (
    "public transport",
    "local schools",
    "the national economy",
    "foreign trade",
    "renewable energy",
    "the health system",
    "online privacy",
    "space exploration",
    "small businesses",
    "the police",
    "religious institutions",
    "the news media",
    "artificial intelligence",
    "farming subsidies",
    "immigration",
    "military spending",
    "tourism",
    "the minimum wage",
    "housing costs",
    "climate policy",
    "public libraries",
    "the courts",
    "labour unions",
    "big technology companies",
    "road safety",
    "pensions",
    "the film industry",
    "water quality",
    "local elections",
    "youth sport",
    "university fees",
    "air travel",
    "nuclear power",
    "street markets",
    "the postal service",
    "childcare",
    "online shopping",
    "wildlife protection",
    "the arts",
    "national parks",
)
_FRAMES = (
    "How much do you trust {s}?",
    "Should the government spend more on {s}?",
    "Over the next five years, will {s} get better or worse?",
    "How important is {s} to your daily life?",
    "Is {s} a major problem in your country?",
    "Do you approve of the way leaders handle {s}?",
)
_OPTION_SETS = (
    ("A great deal", "Somewhat", "Not very much", "Not at all"),
    ("Spend much more", "Spend a bit more", "Keep the same", "Spend less"),
    ("Much better", "A little better", "A little worse", "Much worse"),
    ("Very important", "Fairly important", "Not too important", "Not important at all"),
    ("A very big problem", "A moderately big problem", "A small problem", "Not a problem"),
    ("Strongly approve", "Approve", "Disapprove", "Strongly disapprove"),
)


@dataclass(frozen=True)
class GeneratedOpinions:
    """Settings of the generated set.

    Attributes:
        num_pairs: total number of preference pairs over all groups (≥ 50, so the smallest
            group has enough rows for three splits).
        seed: generator seed; the same seed gives the same rows on every machine.
    """

    num_pairs: int = 1200
    seed: int = 0

    def __post_init__(self) -> None:
        # ≥ 50 so the smallest group has rows in all three splits; ≤ 1600 so no group repeats a
        # (question, chosen, rejected) triple: 240 questions × 3 rejected options ≥ 45 % of 1600.
        if not 50 <= self.num_pairs <= 1600:
            raise ValueError(f"data.generated.num_pairs must lie in [50, 1600], got {self.num_pairs}")

    def rows(self) -> dict[str, list]:
        """Columns ``prompt, chosen, rejected, group`` (answers are " A", " B", ... letters)."""
        rng = np.random.default_rng(self.seed)
        questions = [(frame.format(s=subject), fi) for fi, frame in enumerate(_FRAMES) for subject in _SUBJECTS]
        n_opts = 4
        # Preferred option of each group for each question: group 0 draws at random, group g keeps
        # group 0's answer unless it disagrees (probability DISAGREEMENT[g]), then picks another.
        base = rng.integers(0, n_opts, size=len(questions))
        preferred = np.empty((len(GROUPS), len(questions)), dtype=np.int64)
        for g, p in enumerate(DISAGREEMENT):
            flip = rng.random(len(questions)) < p
            shift = rng.integers(1, n_opts, size=len(questions))
            preferred[g] = np.where(flip, (base + shift) % n_opts, base)
        counts = np.floor(np.asarray(SHARES) * self.num_pairs).astype(int)
        counts[0] += self.num_pairs - counts.sum()
        out: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "group": []}
        for g, (group, n) in enumerate(zip(GROUPS, counts, strict=True)):
            # Each question once before any repeats, so a small group still sees varied questions.
            order = np.concatenate([rng.permutation(len(questions)) for _ in range(-(-n // len(questions)))])[:n]
            # The k-th time a group sees a question it gets the k-th of a random order of the other
            # options as rejected answer, so no pair repeats.
            shifts = np.stack([rng.permutation(np.arange(1, n_opts)) for _ in questions])
            seen = np.zeros(len(questions), dtype=np.int64)
            for q in order:
                text, frame = questions[q]
                chosen = int(preferred[g, q])
                rejected = int((chosen + shifts[q, seen[q]]) % n_opts)
                seen[q] += 1
                out["prompt"].append(format_prompt(group, text, _OPTION_SETS[frame]))
                out["chosen"].append(f" {LETTERS[chosen]}")
                out["rejected"].append(f" {LETTERS[rejected]}")
                out["group"].append(group)
        return out
