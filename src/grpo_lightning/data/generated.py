"""The embedded default data: a generated "group opinions" set shaped like Global Opinion QA.

Nothing is downloaded and nothing large is committed: the rows are a deterministic function of
the seed. Five groups of very different sizes (≈ 45/25/15/10/5 %) answer the same multiple-choice
questions (40 subjects × 6 question frames); each group prefers one option per question. The
largest group's preferred option depends on the subject; a smaller group departs from it on more
question frames (0, 1, 3, 4 and 6 of the 6 frames: DISAGREEMENT × 6, rounded), by a fixed shift of
the option letter. So every group's preferences are learnable, and the smallest group — which
disagrees with the largest almost everywhere — is the one a pooled objective serves worst: the
situation group-robust training is for (Ramesh et al. 2024, §5.2).
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
        n_opts, n_frames = 4, len(_FRAMES)
        questions = [
            (frame.format(s=subject), fi, si)
            for fi, frame in enumerate(_FRAMES)
            for si, subject in enumerate(_SUBJECTS)
        ]
        # Preferences follow rules a model can learn, like a country's consistent stances in GOQA:
        # the largest group's answer depends on the subject; group g departs from it on a fixed
        # set of question frames (DISAGREEMENT[g] of them), by a fixed shift of the option letter.
        base = rng.integers(0, n_opts, size=len(_SUBJECTS))
        preferred = np.empty((len(GROUPS), len(questions)), dtype=np.int64)
        for g, share in enumerate(DISAGREEMENT):
            frames = rng.permutation(n_frames)[: int(round(share * n_frames))]
            shift = rng.integers(1, n_opts)
            for q, (_, fi, si) in enumerate(questions):
                preferred[g, q] = (base[si] + (shift if fi in frames else 0)) % n_opts
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
                text, frame, _ = questions[q]
                chosen = int(preferred[g, q])
                rejected = int((chosen + shifts[q, seen[q]]) % n_opts)
                seen[q] += 1
                out["prompt"].append(format_prompt(group, text, _OPTION_SETS[frame]))
                out["chosen"].append(f" {LETTERS[chosen]}")
                out["rejected"].append(f" {LETTERS[rejected]}")
                out["group"].append(group)
        return out
