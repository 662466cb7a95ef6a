"""K-fold cross-fitting over Global Opinion QA *questions*, stratified by country.

Cross-fitting scores every pair of the data with a model that never trained on its question: the questions are
cut into k folds; the run for fold i trains on the other folds (and validates on a part of them) and scores fold i.
A question is the unit, not a (question, country) pair, because the prompt of one country's pair differs from
another's only by the country's name: a model that trained on Nigeria's answer to a question has seen the question.

Construction (pure functions of the question texts, the countries each question has pairs for, k and the seed):

1. **Key.** Each question gets u(q) = the first 8 bytes of SHA-256(``"{seed}\\0folds\\0{text}"``) read as an
   integer: a keyed hash of its (stripped) text, so the order it induces is a seeded random order that depends on
   nothing else (not on row order, file, method or run).
2. **Strata.** A question's stratum is the set of countries it has pairs for (its *signature*; on the GOQA sample
   with the paper's five countries, 258 of 319 questions are asked in one of them, 56 in two, 5 in three).
3. **Folds.** Within a stratum, questions sorted by key are dealt to folds in turn, starting at a fold chosen by a
   keyed hash of (seed, stratum): fold(q) = (rank_s(q) + r_s) mod k. Every stratum splits into folds whose sizes
   differ by at most one, and the starting fold r_s spreads the strata's remainders over the folds, so each
   country's pairs split nearly evenly (a country's imbalance is at most one question per stratum it is in).
4. **Validation.** Within fold i's training questions, the same dealing with a second key (``"{seed}\\0val{i}\\0{text}"``)
   into m = round(1 / val_fraction) parts, stratum by stratum, gives the validation questions (part 0): the monitor's
   split, carved from the training questions by question.

Stability: the fold of a question depends on its text, the seed, k and the other questions *of its own stratum*
only. Adding or removing a question moves no question of another stratum, and within its stratum only questions
ranked after it by key (a plain ``u(q) mod k`` would move none, but balances the countries only in expectation: on
the GOQA sample with seed 0 and k = 3, China's 37 questions split 13/14/10 that way, 12/13/12 this way). Every method and every run with the same data, k and seed
sees the same folds, because nothing else enters.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["assign_folds", "fold_splits", "question_key"]


def question_key(seed: int, text: str, salt: str = "folds") -> int:
    """u(q): a 64-bit keyed hash of a question's stripped text (step 1 of the module docstring)."""
    digest = hashlib.sha256(f"{seed}\x00{salt}\x00{text.strip()}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _stratum_offset(seed: int, salt: str, stratum: Hashable, k: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{salt}\x00{stratum!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % k


def assign_folds(strata: Mapping[str, Hashable], num_folds: int, seed: int, salt: str = "folds") -> dict[str, int]:
    """fold(q) ∈ {0, …, k − 1} for each question (steps 1–3 of the module docstring).

    Args:
        strata: question text → its stratum (any hashable with a stable ``repr``, e.g. a sorted tuple of countries).
        num_folds: k ≥ 2.
        seed: the key's seed.
        salt: separates independent dealings (the folds, and each fold's validation part).

    Returns:
        question text → fold. Within each stratum, fold sizes differ by at most one.
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"data.num_folds must be an int >= 2, got {num_folds!r}")
    by_stratum: dict[Hashable, list[str]] = defaultdict(list)
    for text, stratum in strata.items():
        by_stratum[stratum].append(text)
    folds: dict[str, int] = {}
    for stratum, texts in by_stratum.items():
        offset = _stratum_offset(seed, salt, stratum, num_folds)
        # The text breaks (astronomically unlikely) key ties, so the order never depends on input order.
        ranked = sorted(texts, key=lambda t: (question_key(seed, t, salt), t))
        for rank, text in enumerate(ranked):
            folds[text] = (rank + offset) % num_folds
    return folds


def fold_splits(
    countries_of: Mapping[str, Sequence[str]], num_folds: int, fold: int, seed: int, val_fraction: float = 0.1
) -> dict[str, str]:
    """The split (``train``, ``val`` or ``test``) of each question in cross-fitting fold ``fold``.

    Fold ``fold``'s questions are ``test``; of the others, one part in m = round(1 / ``val_fraction``) per stratum
    (a second keyed dealing) is ``val``, the rest ``train`` (step 4 of the module docstring).

    Args:
        countries_of: question text → the countries it has pairs for (the stratum is their sorted tuple).
        num_folds: k ≥ 2.
        fold: which fold is held out, in [0, k).
        seed: the keys' seed.
        val_fraction: the share of the training questions put in ``val``, in (0, 0.5].
    """
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise ValueError(f"data.fold must be an int in [0, data.num_folds={num_folds}), got {fold!r}")
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"data.fold_val_fraction must lie in (0, 0.5], got {val_fraction}")
    strata = {text: tuple(sorted(set(countries))) for text, countries in countries_of.items()}
    folds = assign_folds(strata, num_folds, seed)
    training = {text: strata[text] for text in strata if folds[text] != fold}
    parts = assign_folds(training, max(2, round(1 / val_fraction)), seed, salt=f"val{fold}")
    return {text: "test" if folds[text] == fold else ("val" if parts[text] == 0 else "train") for text in strata}
