"""The embedded default data: a generated "group opinions" set shaped like Global Opinion QA.

Nothing is downloaded and nothing large is committed: the rows are a deterministic function of
the seed. Five groups of very different sizes (45/25/15/10/5 % of the training pairs) answer the
same multiple-choice questions (40 subjects × 6 question frames); each group prefers one option per
question. The mainstream answer depends on the subject; a group departs from it on a fixed set of
question frames (0, 1, 1, 3 and 6 of the 6: :data:`DEPARTED_FRAMES`), by a fixed shift of the option
letter. The three largest groups (85 % of the pairs) almost always agree; the two smallest depart
on half and on all of the frames.

Why this task shows what group-robust training is for (Ramesh et al. 2024, §3): by default the
prompt does **not** name the group (``name_groups: false``), as for an assistant that does not
know who asks, so one answer distribution per question must serve every group and the groups'
preferences *conflict* on the same prompt. The pooled objective (IPO) weighs each group by its
share and settles on the majority's answers, so the small groups that disagree are served worst;
the group-robust objective moves weight to the worst group until the groups' losses meet (for IPO,
putting log-ratio mass on both contested answers). Because the prompt carries no group, a model
cannot serve a small group by memorising its few training pairs: the failure mode of group DRO
with identifiable small groups (Sagawa et al. 2020) has nothing to act on. With
``name_groups: true`` the prompts are the paper's ("Opinion of people in {group} on: ..."): every
group is then learnable on its own and the conflict disappears.

Evaluation pairs are drawn separately: ``val_pairs_per_group`` and ``test_pairs_per_group`` pairs
per group, uniformly over the group's (question, rejected option) pairs, from their own random
stream, so they do not depend on the training imbalance or on ``num_pairs`` and every group's loss
is estimated from the same number of pairs. They carry a ``split`` column that
:class:`~grpo_lightning.data.PreferenceDataModule` uses as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grpo_lightning.data.prompts import LETTERS, format_prompt

GROUPS = ("Avalon", "Brightwater", "Cedarholm", "Dunmore", "Eastvale")
SHARES = (0.45, 0.25, 0.15, 0.10, 0.05)
# Of the 6 question frames, how many each group answers differently from the mainstream.
DEPARTED_FRAMES = (0, 1, 1, 3, 6)
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
        num_pairs: training pairs over all groups, shared 45/25/15/10/5 % (in [50, 1600]: the
            smallest group then has a few pairs, and no group repeats a training pair).
        val_pairs_per_group: validation pairs of each group, drawn apart from the training
            pairs (0 with ``test_pairs_per_group: 0``: no separate evaluation pairs; the data
            module then splits the training pool by ``data.split_fractions``).
        test_pairs_per_group: test pairs of each group, disjoint from the validation pairs.
        name_groups: name the group in the prompt (the paper's GOQA prompt); by default the
            prompt does not say who answers, so the groups' preferences conflict (module docstring).
        seed: generator seed; the same seed gives the same rows on every machine.
    """

    num_pairs: int = 1200
    val_pairs_per_group: int = 100
    test_pairs_per_group: int = 200
    name_groups: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        # ≥ 50 so the smallest group has rows in all three splits; ≤ 1600 so no group repeats a
        # (question, chosen, rejected) triple: 240 questions × 3 rejected options ≥ 45 % of 1600.
        if not 50 <= self.num_pairs <= 1600:
            raise ValueError(f"data.generated.num_pairs must lie in [50, 1600], got {self.num_pairs}")
        n_eval = self.val_pairs_per_group + self.test_pairs_per_group
        if min(self.val_pairs_per_group, self.test_pairs_per_group) < 0 or n_eval > _N_DISTINCT:
            raise ValueError(
                "data.generated.val_pairs_per_group and test_pairs_per_group must be >= 0 with a sum of at most "
                f"{_N_DISTINCT} (the distinct pairs of a group), got {self.val_pairs_per_group}, "
                f"{self.test_pairs_per_group}"
            )
        if (self.val_pairs_per_group == 0) != (self.test_pairs_per_group == 0):
            raise ValueError("data.generated: give both val_pairs_per_group and test_pairs_per_group, or neither")

    def preferred(self) -> np.ndarray:
        """(K, Q) index of each group's preferred option per question (question q = frame × 40 + subject)."""
        rng = np.random.default_rng(self.seed)
        base = rng.integers(0, _N_OPTS, size=len(_SUBJECTS))
        preferred = np.empty((len(GROUPS), len(_QUESTIONS)), dtype=np.int64)
        for g, n_departed in enumerate(DEPARTED_FRAMES):
            frames = rng.permutation(len(_FRAMES))[:n_departed]
            shift = rng.integers(1, _N_OPTS)
            for q, (_, fi, si) in enumerate(_QUESTIONS):
                preferred[g, q] = (base[si] + (shift if fi in frames else 0)) % _N_OPTS
        return preferred

    def rows(self) -> dict[str, list]:
        """Columns ``prompt, chosen, rejected, group`` (answers are " A", " B", ... letters) and,
        with evaluation pairs, ``split`` (``train``/``val``/``test``)."""
        preferred = self.preferred()
        # Independent streams: the evaluation pairs do not change with num_pairs.
        train_rng, eval_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([self.seed, 1]).spawn(2))
        out: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "group": [], "split": []}

        def add(g: int, q: int, rejected_shift: int, split: str) -> None:
            text, frame, _ = _QUESTIONS[q]
            chosen = int(preferred[g, q])
            out["prompt"].append(format_prompt(GROUPS[g] if self.name_groups else None, text, _OPTION_SETS[frame]))
            out["chosen"].append(f" {LETTERS[chosen]}")
            out["rejected"].append(f" {LETTERS[(chosen + rejected_shift) % _N_OPTS]}")
            out["group"].append(GROUPS[g])
            out["split"].append(split)

        counts = np.floor(np.asarray(SHARES) * self.num_pairs).astype(int)
        counts[0] += self.num_pairs - counts.sum()
        for g, n in enumerate(counts):
            # Each question once before any repeats, so a small group still sees varied questions.
            order = np.concatenate([train_rng.permutation(len(_QUESTIONS)) for _ in range(-(-n // len(_QUESTIONS)))])[
                :n
            ]
            # The k-th time a group sees a question it gets the k-th of a random order of the other
            # options as rejected answer, so no pair repeats.
            shifts = np.stack([train_rng.permutation(np.arange(1, _N_OPTS)) for _ in _QUESTIONS])
            seen = np.zeros(len(_QUESTIONS), dtype=np.int64)
            for q in order:
                add(g, int(q), int(shifts[q, seen[q]]), "train")
                seen[q] += 1
        n_val, n_test = self.val_pairs_per_group, self.test_pairs_per_group
        for g in range(len(GROUPS)):
            # Distinct (question, rejected) pairs of the group, uniformly: val and test disjoint.
            picks = eval_rng.permutation(_N_DISTINCT)[: n_val + n_test]
            for i, pick in enumerate(picks):
                add(g, int(pick // (_N_OPTS - 1)), int(pick % (_N_OPTS - 1)) + 1, "val" if i < n_val else "test")
        if n_val + n_test == 0:
            del out["split"]
        return out


_N_OPTS = 4
_QUESTIONS = [
    (frame.format(s=subject), fi, si) for fi, frame in enumerate(_FRAMES) for si, subject in enumerate(_SUBJECTS)
]
_N_DISTINCT = len(_QUESTIONS) * (_N_OPTS - 1)
