"""Global Opinion QA (GOQA) as group-labelled preference pairs.

Anthropic's ``llm_global_opinions`` (Durmus et al., 2023) holds survey questions with, per country, the share of
respondents who picked each answer option.  Group Robust Preference Optimization (Ramesh et al., 2024) turns it into
a preference data set with one group per country: the prompt asks for the opinion of people in a country, the
responses are option letters, the country's most chosen option is preferred over the others.

This module is pure data code.  It

* loads the raw table (:func:`load_goqa_table`) from the Hugging Face Hub or from local CSV / parquet files,
* parses the ``selections`` and ``options`` strings without evaluating code (:func:`parse_selections`,
  :func:`parse_options`),
* builds the pairs (:func:`build_goqa_pairs`): a :class:`datasets.Dataset` with the string columns ``prompt``,
  ``chosen``, ``rejected``, ``group`` and ``sft_target``, the integer column ``question_id`` (the question's row
  index, so that a splitter can keep all pairs of one prompt in the same split) and ``shares``, the country's survey
  distribution over the options (for the opinion-alignment metric of Durmus et al. 2023).

Rows that cannot be used are skipped and counted per reason (see :data:`SKIP_REASONS`).
"""

from __future__ import annotations

import ast
import collections
import difflib
import hashlib
import logging
import math
import random
from collections.abc import Sequence
from typing import Any

import datasets

from grpo_lightning.data.sources.goqa_loading import DEFAULT_HUB_ID, REQUIRED_COLUMNS, load_goqa_table
from grpo_lightning.data.sources.prompts import LETTERS, format_prompt

__all__ = [
    "DEFAULT_HUB_ID",
    "PAPER_COUNTRIES",
    "SKIP_REASONS",
    "build_goqa_pairs",
    "format_prompt",
    "load_goqa_table",
    "parse_options",
    "parse_selections",
]

logger = logging.getLogger(__name__)


#: The five countries (groups) of the paper's Global Opinion QA experiments.
PAPER_COUNTRIES: tuple[str, ...] = ("Nigeria", "Egypt", "India (Current national sample)", "China", "Japan")

#: Why a row, or one country's distribution in a row, was skipped.  Row-level reasons are counted once per row;
#: distribution-level reasons once per (row, configured country).
SKIP_REASONS: dict[str, str] = {
    "empty_question": "the question is empty (row level)",
    "unparsable_options": "the options string is not a list literal of strings (row level)",
    "no_options": "the options list is empty (row level)",
    "single_option": "only one option, so no pair can be formed (row level)",
    "too_many_options": "more than 26 options, beyond the letters A-Z (row level)",
    "unparsable_selections": "the selections string is not a country -> list of numbers mapping (row level)",
    "wrong_length": "a country's distribution does not have one share per option (per country)",
    "invalid_shares": "a country's distribution has a negative, NaN or infinite share (per country)",
    "all_zero": "a country's distribution sums to zero (per country)",
    "no_strict_preference": "n_pairs='all' but every option has the same share, so no pair (per country)",
}

OUTPUT_COLUMNS: tuple[str, ...] = ("prompt", "chosen", "rejected", "group", "sft_target", "question_id", "shares")
_DEFAULTDICT_PREFIX = "defaultdict(<class 'list'>,"
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "NaN": math.nan, "Infinity": math.inf}
_OUTPUT_FEATURES = datasets.Features(
    {
        "prompt": datasets.Value("string"),
        "chosen": datasets.Value("string"),
        "rejected": datasets.Value("string"),
        "group": datasets.Value("string"),
        "sft_target": datasets.Value("string"),
        "question_id": datasets.Value("int64"),
        # The country's survey distribution over the options (as given, not renormalised), so that opinion
        # alignment (core/alignment.py) can be measured on the pairs' own split.
        "shares": datasets.Sequence(datasets.Value("float64")),
    }
)


# --------------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------------


def _number(node: ast.expr) -> float:
    """Evaluate one share: a numeric literal, optionally signed, or the bare names ``nan`` / ``inf``."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return sign * float(node.value)
    if isinstance(node, ast.Name) and node.id in _SPECIAL_FLOATS:
        return sign * _SPECIAL_FLOATS[node.id]
    raise ValueError(f"a share in selections must be a number, got {ast.dump(node)[:80]}")


def parse_selections(text: str) -> dict[str, list[float]]:
    """Parse a GOQA ``selections`` string into ``{country: [share per option]}``.

    The dataset stores ``str(defaultdict(list, {...}))``, i.e. ``"defaultdict(<class 'list'>, {'Country': [0.1, ...],
    ...})"``; a plain ``{...}`` dict literal is accepted too.  The wrapper is stripped and the dict literal is read
    with :func:`ast.parse` restricted to a dict of string keys and lists (or tuples) of numbers; ``nan`` and ``inf``
    are accepted as numbers so that such shares can be reported as invalid values rather than as unparsable text.
    Nothing is ever evaluated as code.  Values are not range-checked here (negative or NaN shares are the caller's
    business).

    Raises:
        ValueError: with the reason, when the text is not of that form.
    """
    if not isinstance(text, str):
        raise ValueError(f"selections must be a string, got {type(text).__name__}")
    body = text.strip()
    if body.startswith("defaultdict"):
        if not body.startswith(_DEFAULTDICT_PREFIX) or not body.endswith(")"):
            raise ValueError(f"selections must look like {_DEFAULTDICT_PREFIX} {{...}}), got {body[:60]!r}")
        body = body[len(_DEFAULTDICT_PREFIX) : -1].strip()
    if not body.startswith("{"):
        raise ValueError(f"selections must hold a dict literal, got {body[:60]!r}")
    try:
        tree = ast.parse(body, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"selections is not a valid dict literal: {exc}") from None
    if not isinstance(tree, ast.Dict):
        raise ValueError("selections must hold a dict literal")
    result: dict[str, list[float]] = {}
    for key_node, value_node in zip(tree.keys, tree.values, strict=True):
        if not (isinstance(key_node, ast.Constant) and isinstance(key_node.value, str)):
            raise ValueError("selections keys must be country-name strings")
        if not isinstance(value_node, (ast.List, ast.Tuple)):
            raise ValueError(f"the shares of {key_node.value!r} in selections must be a list of numbers")
        result[key_node.value] = [_number(element) for element in value_node.elts]
    return result


def parse_options(text: str) -> list[str]:
    """Parse a GOQA ``options`` string (a Python list literal) into the list of option texts.

    Read with :func:`ast.literal_eval` (never ``eval``); the elements must be strings or numbers (numbers are turned
    into strings, as the paper's code does with ``str(opt)``).  Quotes inside option texts are fine as long as the
    literal is well formed.

    Raises:
        ValueError: with the reason, when the text is not a list literal of strings / numbers.
    """
    if not isinstance(text, str):
        raise ValueError(f"options must be a string, got {type(text).__name__}")
    try:
        value = ast.literal_eval(text.strip())
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"options is not a Python literal: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"options must be a list literal, got {type(value).__name__}")
    options: list[str] = []
    for element in value:
        if isinstance(element, bool) or not isinstance(element, (str, int, float)):
            raise ValueError(f"options must be strings, got {type(element).__name__}")
        options.append(str(element))
    return options


# --------------------------------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------------------------------


def _pair_rng(seed: int, question_id: int, country: str) -> random.Random:
    """A generator that depends only on (seed, question, country), not on which other rows or groups are present."""
    digest = hashlib.sha256(f"{seed}\x00{question_id}\x00{country}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _resolve_groups(groups: Sequence[str] | str, present: Sequence[str]) -> list[str]:
    if isinstance(groups, str):
        if groups == "all":
            return sorted(present)
        groups = [groups]  # a single country name
    wanted = list(dict.fromkeys(groups))
    if not wanted:
        raise ValueError("groups must name at least one country, or be 'all'")
    present_set = set(present)
    unknown = [country for country in wanted if country not in present_set]
    if unknown:
        hints = []
        for country in unknown:
            close = difflib.get_close_matches(country, present, n=3, cutoff=0.6)
            close += [name for name in sorted(present) if country.lower() in name.lower() and name not in close][:3]
            hints.append(f"{country!r} (close matches: {close})" if close else repr(country))
        raise ValueError(f"GOQA has no country {', '.join(hints)}; {len(present_set)} countries are present")
    return wanted


def build_goqa_pairs(
    table: datasets.Dataset,
    *,
    groups: Sequence[str] | str = PAPER_COUNTRIES,
    n_pairs: int | str = 1,
    seed: int = 0,
    source_name: str = "<table>",
) -> tuple[datasets.Dataset, collections.Counter]:
    """Turn a raw GOQA table into preference pairs, one group per country, as in Ramesh et al. (2024).

    For every row (question) and every configured country whose distribution is usable, the prompt is
    :func:`format_prompt` and the responses are bare option letters (``"A"``, ``"B"``, ...).

    * ``n_pairs=k`` (int >= 1): ``chosen`` is the country's most chosen option (ties: the lowest option index) and
      ``rejected`` runs over ``min(k, n_options - 1)`` distinct other options drawn at random; one row per pair.
    * ``n_pairs="all"``: every ordered pair (i, j) of options with share_i > share_j, in (i, j) order.

    The draws use a generator seeded from (``seed``, question index, country), so a (question, country) gets the same
    pairs whatever other rows or groups the table or the configuration holds.  ``sft_target`` is the country's most
    chosen option (so it equals ``chosen`` whenever ``n_pairs`` is an int); ``question_id`` is the row index.

    Args:
        table: a raw GOQA table, e.g. from :func:`load_goqa_table`.
        groups: the countries to keep, in output order, or ``"all"`` for every country present (sorted by name).
        n_pairs: pairs per (question, country): an int >= 1 or ``"all"``.
        seed: the seed of the rejected-option draws.
        source_name: a name for the table in the log message (e.g. the file name).

    Returns:
        The pairs (columns ``prompt``, ``chosen``, ``rejected``, ``group``, ``sft_target``, ``question_id``,
        ``shares``; rows in
        table order, then group order) and a :class:`collections.Counter` of skips per reason (see
        :data:`SKIP_REASONS`; only reasons that occurred).  A row whose selections lack a configured country is no
        skip, it just yields no example for that country.

    Raises:
        ValueError: for a bad ``n_pairs``, missing columns, or a configured country absent from the whole table
            (the message names it with close matches).
    """
    if isinstance(n_pairs, bool) or not (n_pairs == "all" or (isinstance(n_pairs, int) and n_pairs >= 1)):
        raise ValueError(f"n_pairs must be an int >= 1 or 'all', got {n_pairs!r}")
    missing = [column for column in REQUIRED_COLUMNS if column not in table.column_names]
    if missing:
        raise ValueError(f"GOQA table {source_name} lacks the column(s) {missing}; found {table.column_names}")

    skips: collections.Counter = collections.Counter()
    parsed: list[tuple[int, str, list[str], dict[str, list[float]]]] = []
    countries_present: dict[str, None] = {}
    for question_id, (question, selections_text, options_text) in enumerate(
        zip(table["question"], table["selections"], table["options"], strict=True)
    ):
        if question is None or not str(question).strip():
            skips["empty_question"] += 1
            continue
        try:
            options = parse_options(options_text)
        except ValueError:
            skips["unparsable_options"] += 1
            continue
        if not options:
            skips["no_options"] += 1
            continue
        if len(options) == 1:
            skips["single_option"] += 1
            continue
        if len(options) > len(LETTERS):
            skips["too_many_options"] += 1
            continue
        try:
            selections = parse_selections(selections_text)
        except ValueError:
            skips["unparsable_selections"] += 1
            continue
        countries_present.update(dict.fromkeys(selections))
        parsed.append((question_id, str(question), options, selections))

    wanted = _resolve_groups(groups, list(countries_present))
    columns: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
    for question_id, question, options, selections in parsed:
        letters = LETTERS[: len(options)]
        for country in wanted:
            shares = selections.get(country)
            if shares is None:
                continue  # this question was not asked in this country: no example, no skip
            if len(shares) != len(options):
                skips["wrong_length"] += 1
                continue
            if any(not math.isfinite(share) or share < 0 for share in shares):
                skips["invalid_shares"] += 1
                continue
            if sum(shares) <= 0:
                skips["all_zero"] += 1
                continue
            best = max(range(len(shares)), key=lambda i: (shares[i], -i))  # ties: the lowest option index
            if n_pairs == "all":
                pairs = [(i, j) for i in range(len(shares)) for j in range(len(shares)) if shares[i] > shares[j]]
                if not pairs:
                    skips["no_strict_preference"] += 1
                    continue
            else:
                others = [i for i in range(len(shares)) if i != best]
                rng = _pair_rng(seed, question_id, country)
                pairs = [(best, j) for j in rng.sample(others, min(int(n_pairs), len(others)))]
            prompt = format_prompt(country, question, options)
            for i, j in pairs:
                # Responses are the bare letters, no leading space and no trailing text, as in the paper's code
                # (rsshyam/Group-robust-preference-optimization, global_opinion_data_processing.py).
                columns["prompt"].append(prompt)
                columns["chosen"].append(letters[i])
                columns["rejected"].append(letters[j])
                columns["group"].append(country)
                columns["sft_target"].append(letters[best])
                columns["question_id"].append(question_id)
                columns["shares"].append([float(share) for share in shares])

    pairs_dataset = datasets.Dataset.from_dict(columns, features=_OUTPUT_FEATURES)
    per_group = collections.Counter(columns["group"])
    logger.info(
        "GOQA %s: %d pairs from %d rows; pairs per group: %s; skipped: %s",
        source_name,
        len(pairs_dataset),
        len(table),
        {country: per_group[country] for country in wanted},
        dict(sorted(skips.items())) or "none",
    )
    return pairs_dataset, skips
