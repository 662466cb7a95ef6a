"""``GlobalOpinionQADataModule``: Global Opinion QA pairs (data/goqa.py) through the generic data module."""

from __future__ import annotations

from typing import Any

import datasets

from grpo_lightning.data.goqa import DEFAULT_HUB_ID, PAPER_COUNTRIES, build_goqa_pairs, load_goqa_table
from grpo_lightning.data.module import PreferenceDataModule
from grpo_lightning.data.rows import SOURCE_COLUMNS


class GlobalOpinionQADataModule(PreferenceDataModule):
    """Global Opinion QA as group-labelled preference pairs, one group per country (Ramesh et al.
    2024, §5.2): the paper's real-data setting.

    Reads the dataset's own schema from ``path`` (a CSV or parquet file, or a directory of them)
    or else from ``hub_id``; every other argument is the one of :class:`PreferenceDataModule`
    (splits are 80/10/10 per country, seeded, so runs of different methods see the same pairs).

    Args:
        countries: the groups, in id order: a list of countries (default: the paper's five,
            Nigeria, Egypt, India (Current national sample), China, Japan) or ``"all"``.
        n_pairs: pairs per (question, country): an int (distinct rejected options), or ``"all"``
            for every ordered pair with a strictly higher share.
        hub_id: the dataset on the Hugging Face hub, used when ``path`` is not given.
        **kwargs: the arguments of :class:`PreferenceDataModule`.
    """

    def __init__(
        self,
        countries: list[str] | str = PAPER_COUNTRIES,
        n_pairs: int | str = 1,
        hub_id: str = DEFAULT_HUB_ID,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("groups") is None and countries != "all":
            kwargs["groups"] = list(countries)  # the countries' order gives the group ids
        # A local path replaces the hub id (the base class refuses both at once).
        super().__init__(hub_id=None if kwargs.get("path") else hub_id, **kwargs)
        self.countries = countries if countries == "all" else list(countries)
        self.n_pairs = n_pairs

    def load_rows(self) -> datasets.Dataset:
        table = load_goqa_table(self.path, hub_id=self.hub_id, split=self.hub_split)
        pairs, skipped = build_goqa_pairs(
            table, groups=self.countries, n_pairs=self.n_pairs, seed=self.seed, source_name=self.source_name
        )
        self.source_skipped = skipped
        # Each pair's source is its question's row of the table (1-based, as files' rows are numbered).
        return pairs.add_column(SOURCE_COLUMNS[0], [self.source_name] * len(pairs)).add_column(
            SOURCE_COLUMNS[1], [q + 1 for q in pairs["question_id"]]
        )

    # ---------------------------------------------------------------- opinion alignment
    def opinion_items(self, split: str) -> list[dict[str, Any]]:
        """One item per (question, country) of ``split``, for the opinion-alignment metric (Durmus et al. 2023).

        Each item holds ``prompt_ids`` (the pair's prompt tokens exactly as the policy sees them in training,
        truncation included), ``letter_ids`` (the token that starts each option letter's completion after that
        prompt, see :func:`letter_token_ids`), ``shares`` (the country's survey distribution over the options, as
        given) and ``group_id``. With ``n_pairs`` > 1 a (question, country) has several pairs but one item.
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
        names = ("question_id", "group_id", "prompt", "chosen_ids", "prompt_length", "shares")
        for qid, gid, prompt, ids, plen, shares in zip(*(ds[c] for c in names), strict=True):
            if (qid, gid) in items:
                continue
            items[(qid, gid)] = {
                "prompt_ids": list(ids[:plen]),
                "letter_ids": letter_token_ids(self.tokenizer, prompt, len(shares)),
                "shares": list(shares),
                "group_id": int(gid),
            }
        return list(items.values())


def letter_token_ids(tokenizer, prompt: str, n_options: int) -> list[int]:
    """The token id that starts each option letter's completion ``"A"``, ``"B"``, ... right after ``prompt``.

    The same rule as :func:`grpo_lightning.data.tokenization.tokenize_pairs`, so the metric reads the token the
    policy is trained on: the first token after the prompt in the joint encoding of prompt + letter when the
    prompt's tokens are its prefix, else the first token of the letter encoded alone. (GOQA's completions are bare
    letters appended to the prompt, as in the paper's code; with SmolLM2's tokenizer each letter is one token.)
    """
    from grpo_lightning.data.prompts import LETTERS

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
