"""The embedded default data: a generated "group opinions" set shaped like Global Opinion QA.

Nothing is downloaded and nothing large is committed: the rows are a deterministic function of
the settings. Groups of different sizes (``shares`` of the training pairs) answer the same
multiple-choice questions (60 subjects × 6 question frames = 360 questions); each group prefers
one option per question. The mainstream answer depends on the subject; a group departs from it on
``departed_frames[g]`` of the 6 question frames (drawn per group), by a shift of the option letter
drawn per group. Group size and dissent are independent settings, so the data can pose either of
the paper's two kinds of imbalance (Ramesh et al. 2024, §5.1): a small group that is also the one
that disagrees (difficulty follows size: importance weights 1/N_g already help it), or a group
whose difficulty is not proportional to its size (only weights that follow the groups' losses
help). ``configs/base/generated_data.yaml`` says which the default poses and why.

Why conflicts (§3): by default the prompt does **not** name the group (``name_groups: false``), as
for an assistant that does not know who asks, so one answer distribution per question must serve
every group and the groups' preferences *conflict* on the same prompt. The pooled objective (IPO)
weighs each group by its share of the pairs; the group-robust objective moves weight to the group
with the highest loss. With ``name_groups: true`` the prompts are the paper's ("Opinion of people
in {group} on: ..."): every group is then learnable on its own and the conflict disappears.

Held-out evaluation: the questions are split before any pair is drawn. ``val_questions`` and
``test_questions`` questions are answered by *no* group in training; every group is evaluated on
all of them, with each of the 3 other options as rejected answer (3 pairs per group and question:
the defaults 34 and 67 give 102 val and 201 test pairs per group, whatever the training imbalance).
So val/test loss measures how a group's preferences generalise to questions it was not trained on,
not how well its training pairs were memorised. The split is balanced over the design: each frame
holds out an equal share of its subjects (the frame decides who departs, so every group's dissent
is represented in val and test), and each subject is held out in at most half of its frames (a
held-out question's subject and frame were both seen in training, in other combinations).
``eval_questions: seen`` scores the same checkpoint on pairs of the *training* questions instead
(3 × val/test_questions pairs per group, drawn uniformly from the group's pairs on those
questions, so some coincide with training pairs): the memorisation side, reported apart.
The pairs carry a ``split`` column that :class:`~grpo_lightning.data.PreferenceDataModule` uses as
given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from grpo_lightning.data.sources.prompts import LETTERS, format_prompt

GROUPS = ("Avalon", "Brightwater", "Cedarholm", "Dunmore", "Eastvale")
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
    "mobile phone networks",
    "the banking system",
    "recycling",
    "public hospitals",
    "the tax system",
    "electric cars",
    "social media",
    "the army",
    "food prices",
    "international aid",
    "the railways",
    "sports funding",
    "organised religion",
    "local shops",
    "public broadcasting",
    "the internet",
    "heritage sites",
    "the fishing industry",
    "cycling lanes",
    "the space agency",
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
        num_pairs: training pairs over all groups, shared by ``shares`` (in [50, 1600]). A group
            sees each of its training questions once before any repeats, and never gets the same
            (question, rejected) pair twice (a group may have at most 3 pairs per training
            question: the data module would drop exact duplicates).
        shares: each group's share of the training pairs, one per group (groups are named from
            :data:`GROUPS` in order, 2 to 5 of them); positive, summing to 1.
        departed_frames: for each group, on how many of the 6 question frames it departs from
            the mainstream answer (0: it always agrees; 6: it disagrees on every question).
        val_questions: questions held out for validation (no group trains on them); every group
            is scored on each with its 3 wrong options, 3 pairs per group and question.
            0 with ``test_questions: 0``: no held-out questions, and the data module splits the
            training pool by ``data.split_fractions``.
        test_questions: questions held out for test, disjoint from the validation questions.
        eval_questions: ``held_out``: val/test pairs on the held-out questions (generalisation);
            ``seen``: the same number of pairs drawn from the training questions (memorisation),
            the training pairs unchanged, so a checkpoint can be scored both ways.
        name_groups: name the group in the prompt (the paper's GOQA prompt); by default the
            prompt does not say who answers, so the groups' preferences conflict (module docstring).
        seed: generator seed; the same settings give the same rows on every machine.
    """

    num_pairs: int = 1200
    shares: tuple[float, ...] = (0.45, 0.25, 0.15, 0.10, 0.05)
    departed_frames: tuple[int, ...] = (0, 1, 6, 0, 0)
    val_questions: int = 34
    test_questions: int = 67
    eval_questions: Literal["held_out", "seen"] = "held_out"
    name_groups: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        # YAML gives lists; frozen, hashable settings want tuples.
        object.__setattr__(self, "shares", tuple(float(s) for s in self.shares))
        object.__setattr__(self, "departed_frames", tuple(int(d) for d in self.departed_frames))
        k = len(self.shares)
        if not 2 <= k <= len(GROUPS) or len(self.departed_frames) != k:
            raise ValueError(
                f"data.generated.shares and departed_frames need one entry per group (2 to {len(GROUPS)} groups), "
                f"got {len(self.shares)} shares and {len(self.departed_frames)} departed_frames"
            )
        if min(self.shares) <= 0 or abs(sum(self.shares) - 1) > 1e-6:
            raise ValueError(f"data.generated.shares must be positive and sum to 1, got {list(self.shares)}")
        if not all(0 <= d <= len(_FRAMES) for d in self.departed_frames):
            raise ValueError(
                f"data.generated.departed_frames must lie in [0, {len(_FRAMES)}], got {list(self.departed_frames)}"
            )
        # ≥ 50 so the smallest group has a few training pairs.
        if not 50 <= self.num_pairs <= 1600:
            raise ValueError(f"data.generated.num_pairs must lie in [50, 1600], got {self.num_pairs}")
        counts = self.train_counts()
        if counts.min() < 1:
            raise ValueError(f"data.generated: the smallest share of {self.num_pairs} pairs is below one pair")
        n_held = self.val_questions + self.test_questions
        # At most half of each frame's subjects held out: every subject then keeps training frames.
        if min(self.val_questions, self.test_questions) < 0 or n_held > _MAX_HELD_OUT:
            raise ValueError(
                "data.generated.val_questions and test_questions must be >= 0 with a sum of at most "
                f"{_MAX_HELD_OUT} (half the questions), got {self.val_questions}, {self.test_questions}"
            )
        if (self.val_questions == 0) != (self.test_questions == 0):
            raise ValueError("data.generated: give both val_questions and test_questions, or neither")
        n_distinct = (len(_QUESTIONS) - n_held) * (_N_OPTS - 1)
        if counts.max() > n_distinct:
            raise ValueError(
                f"data.generated: the largest group's {counts.max()} training pairs exceed "
                f"its {n_distinct} distinct pairs on the {len(_QUESTIONS) - n_held} training questions (3 wrong "
                "options each); lower num_pairs or the largest share, or hold out fewer questions"
            )
        if self.eval_questions not in ("held_out", "seen"):
            raise ValueError(f"data.generated.eval_questions must be held_out or seen, got {self.eval_questions!r}")

    @property
    def groups(self) -> tuple[str, ...]:
        return GROUPS[: len(self.shares)]

    def train_counts(self) -> np.ndarray:
        """(K,) training pairs per group: ⌊share · num_pairs⌋, the remainder to the largest group."""
        counts = np.floor(np.asarray(self.shares) * self.num_pairs).astype(int)
        counts[int(np.argmax(self.shares))] += self.num_pairs - counts.sum()
        return counts

    def preferred(self) -> np.ndarray:
        """(K, Q) index of each group's preferred option per question (question q = frame × 60 + subject)."""
        rng = np.random.default_rng(self.seed)
        base = rng.integers(0, _N_OPTS, size=len(_SUBJECTS))
        preferred = np.empty((len(self.shares), len(_QUESTIONS)), dtype=np.int64)
        for g, n_departed in enumerate(self.departed_frames):
            frames = rng.permutation(len(_FRAMES))[:n_departed]
            shift = rng.integers(1, _N_OPTS)
            for q, (_, fi, si) in enumerate(_QUESTIONS):
                preferred[g, q] = (base[si] + (shift if fi in frames else 0)) % _N_OPTS
        return preferred

    def question_splits(self) -> np.ndarray:
        """(Q,) split of each question: 0 train, 1 val, 2 test.

        A cyclic design: subjects in a seeded random order, and frame f holds out the subjects
        at positions (⌊f · S/6⌋ + j) mod S for j < m_f (S = 60 subjects), the first of them for
        validation. The m_f (and each frame's val share) differ by at most one between frames, so
        every frame, and with it every group's dissent, is represented in val and test. Since the
        frames' windows start S/6 = 10 positions apart and m_f ≤ S/2, no subject falls in more
        than 3 of the 6 windows: each subject is trained on in at least half of its frames.
        """
        split = np.zeros(len(_QUESTIONS), dtype=np.int64)
        n_frames, n_subj = len(_FRAMES), len(_SUBJECTS)
        order = np.random.default_rng([self.seed, 2]).permutation(n_subj)
        n_val = _spread(self.val_questions, n_frames)
        n_held = n_val + _spread(self.test_questions, n_frames)[::-1]  # big val and big test on different frames
        for f in range(n_frames):
            start = (f * n_subj) // n_frames
            for j in range(n_held[f]):
                subject = order[(start + j) % n_subj]
                split[f * n_subj + subject] = 1 if j < n_val[f] else 2
        return split

    def rows(self) -> dict[str, list]:
        """Columns ``prompt, chosen, rejected, group`` (answers are " A", " B", ... letters) and,
        with held-out questions, ``split`` (``train``/``val``/``test``)."""
        preferred = self.preferred()
        q_split = self.question_splits()
        train_q = np.flatnonzero(q_split == 0)
        # Independent streams: the evaluation pairs do not change with num_pairs or shares.
        train_rng, eval_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([self.seed, 1]).spawn(2))
        out: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "group": [], "split": []}

        def add(g: int, q: int, rejected_shift: int, split: str) -> None:
            text, frame, _ = _QUESTIONS[q]
            chosen = int(preferred[g, q])
            name = self.groups[g]
            out["prompt"].append(format_prompt(name if self.name_groups else None, text, _OPTION_SETS[frame]))
            out["chosen"].append(f" {LETTERS[chosen]}")
            out["rejected"].append(f" {LETTERS[(chosen + rejected_shift) % _N_OPTS]}")
            out["group"].append(name)
            out["split"].append(split)

        counts = self.train_counts()
        n_train_q = len(train_q)
        for g, n in enumerate(counts):
            # Each training question once before any repeats, so a small group still sees varied
            # questions; the k-th time a group sees a question it gets the k-th of a random order
            # of the other options as rejected answer, so no pair repeats.
            rounds = -(-n // n_train_q)
            order = np.concatenate([train_rng.permutation(train_q) for _ in range(rounds)])[:n]
            shifts = np.stack([train_rng.permutation(np.arange(1, _N_OPTS)) for _ in _QUESTIONS])
            seen = np.zeros(len(_QUESTIONS), dtype=np.int64)
            for q in order:
                add(g, int(q), int(shifts[q, seen[q]]), "train")
                seen[q] += 1
        if self.val_questions + self.test_questions == 0:
            del out["split"]
            return out
        for split_id, split in ((1, "val"), (2, "test")):
            held = np.flatnonzero(q_split == split_id)
            for g in range(len(self.shares)):
                if self.eval_questions == "held_out":
                    pairs = [(int(q), r) for q in held for r in range(1, _N_OPTS)]
                else:  # as many pairs, uniformly from the group's pairs on the training questions
                    picks = eval_rng.permutation(n_train_q * (_N_OPTS - 1))[: len(held) * (_N_OPTS - 1)]
                    pairs = [(int(train_q[p // (_N_OPTS - 1)]), int(p % (_N_OPTS - 1)) + 1) for p in picks]
                for q, r in pairs:
                    add(g, q, r, split)
        return out


def _spread(total: int, parts: int) -> np.ndarray:
    """``total`` split into ``parts`` integers that differ by at most one, larger first."""
    return np.array([total // parts + (i < total % parts) for i in range(parts)], dtype=np.int64)


_N_OPTS = 4
_QUESTIONS = [
    (frame.format(s=subject), fi, si) for fi, frame in enumerate(_FRAMES) for si, subject in enumerate(_SUBJECTS)
]
_MAX_HELD_OUT = len(_QUESTIONS) // 2
