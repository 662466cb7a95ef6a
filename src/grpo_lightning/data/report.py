"""What a set-up :class:`~grpo_lightning.data.PreferenceDataModule` trains and evaluates on, as a JSON-able report.

:func:`data_report` reads a data module after ``setup()`` (nothing is recomputed but a few prompt encodings): the rows
read, kept and skipped by reason (the base cleaning's reasons and the source's own, e.g. the comparisons source's,
whose ledgers it adds as ``source_report`` when the module has one), the groups with N_g (training pairs) and share
N_g / N, the train/val/test pairs per group, token lengths of prompts and answers as the model sees them, pairs whose
chosen and rejected tokenise identically, duplicate pairs, and a warning per group too small to evaluate.
:func:`format_report` prints it; :func:`write_report` writes it as JSON.

Its callers: ``grpo data --config …`` prints it for the data module the configs build
(:mod:`grpo_lightning.cli.data_command`), and every ``grpo fit`` writes it as ``<log dir>/data_report.json``
(:class:`grpo_lightning.callbacks.data_report.DataReportWriter`); both call ``data_report(dm)`` on a set-up module.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
#: A group with fewer val or test pairs than this is reported as too small to evaluate (see :func:`data_report`).
MIN_EVAL_PAIRS = 10


def length_stats(lengths: Sequence[int], truncated: int) -> dict[str, Any]:
    """Count, mean, p95 and max of token lengths, and how many were truncated. p95 is numpy's default percentile
    (linear interpolation between the order statistics at 0.95·(n − 1)); an empty list gives ``None`` values."""
    if not lengths:
        return {"count": 0, "mean": None, "p95": None, "max": None, "truncated": truncated}
    arr = np.asarray(lengths, dtype=float)
    return {
        "count": len(lengths),
        "mean": float(arr.mean()),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
        "truncated": truncated,
    }


def _token_lengths(dm, splits: dict) -> dict[str, Any]:
    """Prompt and answer tokens of every kept pair, as tokenised for the model (data/tokenization.py): a prompt
    keeps its last ``max_prompt_length`` tokens, an answer (completion + EOS) is cut to ``max_length`` − prompt.

    An answer was cut iff its stored tokens do not end in EOS (it always gets one when it fits); a prompt was cut
    iff its text encodes to more than ``max_prompt_length`` tokens, checked only for prompts stored at that length.
    """
    eos = dm.tokenizer.eos_token_id
    prompts: list[int] = []
    answers: list[int] = []
    at_limit: list[str] = []
    answers_cut = 0
    for split in splits.values():
        if len(split) == 0:
            continue
        columns = split.select_columns(["prompt", "prompt_length", "chosen_ids", "rejected_ids"]).to_dict()
        for text, n, chosen, rejected in zip(
            columns["prompt"], columns["prompt_length"], columns["chosen_ids"], columns["rejected_ids"], strict=True
        ):
            prompts.append(n)
            if n == dm.max_prompt_length:
                at_limit.append(text)
            for ids in (chosen, rejected):
                answers.append(len(ids) - n)
                answers_cut += not ids or ids[-1] != eos
    prompts_cut = 0
    if at_limit:
        encoded = dm.tokenizer(at_limit, add_special_tokens=False)["input_ids"]
        prompts_cut = sum(len(ids) > dm.max_prompt_length for ids in encoded)
    return {
        "max_length": dm.max_length,
        "max_prompt_length": dm.max_prompt_length,
        "prompt": length_stats(prompts, prompts_cut),
        "answer": length_stats(answers, answers_cut),
    }


def data_report(dm, *, min_eval_pairs: int = MIN_EVAL_PAIRS) -> dict[str, Any]:
    """The report of a prepared data module (call ``dm.setup()`` first; it prepares the data if needed).

    Warnings: a group with fewer than ``min_eval_pairs`` pairs in the val or test split (a split that is empty as a
    whole is not evaluated and not warned about). Why 10: a group's val/test accuracy and loss are means over its
    pairs, and one pair moves a group's accuracy by 1/n, more than 10 points below 10 pairs; the worst-group metrics
    (a minimum over groups) then mostly pick the group with the fewest pairs rather than the one served worst.

    Returns:
        a dict of plain values (``json.dumps`` takes it): ``source``, ``data_class``, ``rows`` (``read``, ``kept``,
        ``skipped`` by reason), ``source_report`` (when the module has one, e.g. ``ComparisonsDataModule``),
        ``splits`` (pairs per split), ``groups`` (name → ``id``, ``train_pairs`` = N_g, ``share`` = N_g / N,
        ``val_pairs``, ``test_pairs``), ``lengths``, ``identical_tokenisation`` and ``duplicate_pairs`` (each
        ``dropped`` by the cleaning and ``in_splits``, which should be 0), ``warnings``.
    """
    dm.setup()
    names = list(dm.group_names)
    splits = {name: dm.dataset(name) for name in SPLITS}
    per_group = {name: Counter(split["group_id"]) if len(split) else Counter() for name, split in splits.items()}
    train_total = sum(per_group["train"].values())
    groups = {
        g: {
            "id": i,
            "train_pairs": per_group["train"][i],
            "share": per_group["train"][i] / train_total if train_total else 0.0,
            "val_pairs": per_group["val"][i],
            "test_pairs": per_group["test"][i],
        }
        for i, g in enumerate(names)
    }
    identical = seen_twice = 0
    seen: set[tuple] = set()
    for split in splits.values():
        if len(split) == 0:
            continue
        cols = split.select_columns(["group", "prompt", "chosen", "rejected", "chosen_ids", "rejected_ids"]).to_dict()
        for g, p, c, r, c_ids, r_ids in zip(*cols.values(), strict=True):
            identical += c_ids == r_ids  # both start with the same prompt tokens
            key = (g, p, c, r)
            seen_twice += key in seen
            seen.add(key)
    skipped = dict(sorted(dm.skipped.items()))
    kept = sum(len(s) for s in splits.values())
    warnings = []
    for split in ("val", "test"):
        if len(splits[split]) == 0:
            continue
        for g, stats in groups.items():
            n = stats[f"{split}_pairs"]
            if n < min_eval_pairs:
                warnings.append(
                    f"group {g!r} has {n} {split} pairs (< {min_eval_pairs}): its {split} metrics rest on too few "
                    "pairs to compare groups"
                )
    # A source that builds pairs from other rows (the comparisons source) counts in two units: rows of its table
    # and the judgements they give; "read" is then its rows, and the skips are rows or judgements by reason
    # (its ledgers, under source_report, say which). Otherwise a row is a pair: read = kept + skipped.
    source_report = getattr(dm, "source_report", None)
    read = source_report["rows_read"] if source_report is not None else dm.rows_in
    report: dict[str, Any] = {
        "source": dm.source_name,
        "data_class": type(dm).__name__,
        "rows": {"read": read, "kept": kept, "skipped": skipped},
    }
    if source_report is not None:
        report["source_report"] = source_report
    report |= {
        "splits": {name: len(split) for name, split in splits.items()},
        "groups": groups,
        "lengths": _token_lengths(dm, splits),
        "identical_tokenisation": {"dropped": skipped.get("identical_after_truncation", 0), "in_splits": identical},
        "duplicate_pairs": {"dropped": skipped.get("duplicate_pair", 0), "in_splits": seen_twice},
        "min_eval_pairs": min_eval_pairs,
        "warnings": warnings,
    }
    return report


def _number(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isnan(x):
        return f"{x:.1f}"
    return str(x)


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    rows = report["rows"]
    lines = [
        f"Data: {report['source']} ({report['data_class']})",
        f"Rows: {rows['read']} read, {rows['kept']} kept, {sum(rows['skipped'].values())} skipped",
    ]
    lines += [f"  skipped as {why}: {n}" for why, n in rows["skipped"].items()]
    source = report.get("source_report")
    if source:
        row_skips, pair_skips = sum(source["rows_skipped"].values()), sum(source["pairs_skipped"].values())
        lines.append(
            f"Source: {source['rows_read']} rows read = {source['rows_used']} used + {row_skips} skipped; "
            f"they give {source['judgements']} judgements = {source['pairs_kept']} pairs + {pair_skips} skipped"
            + (f"; small groups merged: {source['merged_groups']}" if source.get("merged_groups") else "")
        )
    lines.append("Splits: " + ", ".join(f"{name} {n}" for name, n in report["splits"].items()))
    width = max([len("group"), *(len(g) for g in report["groups"])])
    lines.append(f"  {'group':<{width}}  {'id':>3}  {'N_g':>7}  {'share':>6}  {'val':>6}  {'test':>6}")
    for g, s in report["groups"].items():
        lines.append(
            f"  {g:<{width}}  {s['id']:>3}  {s['train_pairs']:>7}  {s['share']:>6.1%}  {s['val_pairs']:>6}  "
            f"{s['test_pairs']:>6}"
        )
    lengths = report["lengths"]
    lines.append(
        f"Tokens, as the model sees them (max_length {lengths['max_length']}, "
        f"max_prompt_length {lengths['max_prompt_length']}):"
    )
    for what in ("prompt", "answer"):
        s = lengths[what]
        lines.append(
            f"  {what:<6}  mean {_number(s['mean'])}, p95 {_number(s['p95'])}, max {_number(s['max'])}; "
            f"truncated {s['truncated']} of {s['count']}"
        )
    same, dup = report["identical_tokenisation"], report["duplicate_pairs"]
    lines.append(f"Chosen and rejected tokenised identically: {same['dropped']} dropped, {same['in_splits']} kept")
    lines.append(f"Duplicate pairs: {dup['dropped']} dropped, {dup['in_splits']} kept")
    if report["warnings"]:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in report["warnings"]]
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return path
