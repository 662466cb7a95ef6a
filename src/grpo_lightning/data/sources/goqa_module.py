"""``GlobalOpinionQADataModule``: Global Opinion QA pairs (data/goqa.py) through the generic data module."""

from __future__ import annotations

from typing import Any

import datasets

from grpo_lightning.data.io import SOURCE_COLUMNS, SPLIT_COLUMN
from grpo_lightning.data.module import PreferenceDataModule
from grpo_lightning.data.sources.goqa import DEFAULT_HUB_ID, PAPER_COUNTRIES, build_goqa_pairs, load_goqa_table
from grpo_lightning.data.sources.goqa_folds import fold_splits


class GlobalOpinionQADataModule(PreferenceDataModule):
    """Global Opinion QA as group-labelled preference pairs, one group per country (Ramesh et al.
    2024, §5.2): the paper's real-data setting.

    Reads the dataset's own schema from ``path`` (a CSV or parquet file, or a directory of them)
    or else from ``hub_id``; every other argument is the one of :class:`PreferenceDataModule`
    (splits are 80/10/10 per country, seeded, so runs of different methods see the same pairs).

    Cross-fitting (``num_folds`` k, ``fold`` i): the splits are by question instead, fold i's questions are
    ``test``, the other folds' are ``train`` and ``val`` (``fold_val_fraction`` of their questions); the folds are
    a keyed hash of the question text and the seed, stratified by country (data/goqa_folds.py), so every method
    and run with the same data, k and seed sees the same folds, and the k runs score every pair once, each with a
    model that did not train on its question. ``split_fractions`` is not used then.

    Args:
        countries: the groups, in id order: a list of countries (default: the paper's five,
            Nigeria, Egypt, India (Current national sample), China, Japan) or ``"all"``.
        n_pairs: pairs per (question, country): an int (distinct rejected options), or ``"all"``
            for every ordered pair with a strictly higher share.
        hub_id: the dataset on the Hugging Face hub, used when ``path`` is not given.
        num_folds: k ≥ 2 for cross-fitting over questions; ``None``: the seeded 80/10/10 split.
        fold: the held-out fold (the ``test`` split), in [0, k).
        fold_val_fraction: share of the training folds' questions kept for ``val``, in (0, 0.5].
        **kwargs: the arguments of :class:`PreferenceDataModule`.
    """

    def __init__(
        self,
        countries: list[str] | str = PAPER_COUNTRIES,
        n_pairs: int | str = 1,
        hub_id: str = DEFAULT_HUB_ID,
        num_folds: int | None = None,
        fold: int = 0,
        fold_val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("groups") is None and countries != "all":
            kwargs["groups"] = list(countries)  # the countries' order gives the group ids
        # A local path replaces the hub id (the base class refuses both at once).
        super().__init__(hub_id=None if kwargs.get("path") else hub_id, **kwargs)
        self.countries = countries if countries == "all" else list(countries)
        self.n_pairs = n_pairs
        if num_folds is not None:
            fold_splits({}, num_folds, fold, 0, fold_val_fraction)  # the settings' checks, before any data is read
        self.num_folds, self.fold, self.fold_val_fraction = num_folds, fold, fold_val_fraction

    def load_rows(self) -> datasets.Dataset:
        table = load_goqa_table(self.path, hub_id=self.hub_id, split=self.hub_split)
        pairs, skipped = build_goqa_pairs(
            table, groups=self.countries, n_pairs=self.n_pairs, seed=self.seed, source_name=self.source_name
        )
        self.source_skipped = skipped
        # Each pair's source is its question's row of the table (1-based, as files' rows are numbered).
        pairs = pairs.add_column(SOURCE_COLUMNS[0], [self.source_name] * len(pairs)).add_column(
            SOURCE_COLUMNS[1], [q + 1 for q in pairs["question_id"]]
        )
        if self.num_folds is None:
            return pairs
        # The data's own splits (PreferenceDataModule uses a ``split`` column as given): by question text.
        texts = question_texts(table, pairs["question_id"])
        split = self.fold_splits(texts, pairs["group"])
        return pairs.add_column(SPLIT_COLUMN, [split[t] for t in texts])

    def fold_splits(self, texts: list[str], groups: list[str]) -> dict[str, str]:
        """Question text → ``train``/``val``/``test`` of this fold, from the pairs' question texts and groups."""
        countries_of: dict[str, set[str]] = {}
        for text, group in zip(texts, groups, strict=True):
            countries_of.setdefault(text, set()).add(group)
        return fold_splits(countries_of, self.num_folds, self.fold, self.seed, self.fold_val_fraction)

    # ---------------------------------------------------------------- opinion alignment
    def opinion_items(self, split: str) -> list[dict[str, Any]]:
        """One item per (question, country) of ``split``, for the opinion-alignment metric (Durmus et al. 2023).

        Each item holds ``prompt_ids`` (the pair's prompt tokens exactly as the policy sees them in training,
        truncation included), ``letter_ids`` (the token that starts each option letter's completion after that
        prompt, see :func:`letter_token_ids`), ``shares`` (the country's survey distribution over the options, as
        given), ``group_id`` and ``source_row`` (its question's row, as in the predictions file). With ``n_pairs`` > 1 a (question, country) has several pairs but one item.
        """
        cached = self.__dict__.setdefault("_opinion_items", {})
        if split not in cached:
            cached[split] = self._build_opinion_items(split)
        return cached[split]

    def _build_opinion_items(self, split: str) -> list[dict[str, Any]]:
        ds = self.dataset(split)
        if len(ds) == 0:
            return []
        items: dict[tuple[int, int], dict[str, Any]] = {}
        names = ("question_id", "group_id", "prompt", "chosen_ids", "prompt_length", "shares", SOURCE_COLUMNS[1])
        for qid, gid, prompt, ids, plen, shares, row in zip(*(ds[c] for c in names), strict=True):
            if (qid, gid) in items:
                continue
            items[(qid, gid)] = {
                "prompt_ids": list(ids[:plen]),
                "letter_ids": letter_token_ids(self.tokenizer, prompt, len(shares)),
                "shares": list(shares),
                "group_id": int(gid),
                "source_row": int(row),
            }
        return list(items.values())


def question_texts(table: datasets.Dataset, question_ids: list[int]) -> list[str]:
    """The stripped question text of each pair (its ``question_id`` is the table row): the unit of the folds,
    so two rows asking the same question fall in the same fold."""
    column = table["question"]
    return [str(column[q]).strip() for q in question_ids]


def letter_token_ids(tokenizer, prompt: str, n_options: int) -> list[int]:
    """The token id that starts each option letter's completion ``"A"``, ``"B"``, ... right after ``prompt``.

    The same rule as :func:`grpo_lightning.data.tokenization.tokenize_pairs`, so the metric reads the token the
    policy is trained on: the first token after the prompt in the joint encoding of prompt + letter when the
    prompt's tokens are its prefix, else the first token of the letter encoded alone. (GOQA's completions are bare
    letters appended to the prompt, as in the paper's code; with SmolLM2's tokenizer each letter is one token.)
    """
    from grpo_lightning.data.sources.prompts import LETTERS

    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    letters = list(LETTERS[:n_options])
    joint = tokenizer([prompt + letter for letter in letters], add_special_tokens=False)["input_ids"]
    alone = tokenizer(letters, add_special_tokens=False)["input_ids"]
    out = []
    for j, a in zip(joint, alone, strict=True):
        out.append(j[len(prompt_ids)] if j[: len(prompt_ids)] == prompt_ids and len(j) > len(prompt_ids) else a[0])
    if len(set(out)) != len(out):
        raise ValueError(f"option letters share a first token after the prompt ({out}); the alignment is undefined")
    return out
