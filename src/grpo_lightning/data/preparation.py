"""A data module's rows prepared once: read → clean → group ids → split → tokenise, every row accounted for.

:func:`prepare` is what ``PreferenceDataModule`` runs the first time it needs its data (at the latest in ``setup``,
on every rank). Each stage counts the rows it drops by reason, so that rows in = rows kept + rows skipped holds
for every source (checked, not assumed), and logs one summary line; the groups are then checked for what the
weighting needs: every group has training pairs (N_g ≥ 1, the α step and the ``scaled_sum`` estimate divide by
it), the evaluation splits cover them (else a worst-group metric ranges over fewer groups), and an optimizer step
is expected to see each (else its α entry mostly waits and its loss estimate rests on a pair or so).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch

from grpo_lightning.data.cleaning import clean_rows, log_skipped
from grpo_lightning.data.io import SOURCE_COLUMNS, SPLIT_COLUMN, DataError, row_refs
from grpo_lightning.data.splits import given_split, pair_fingerprints, stratified_split
from grpo_lightning.data.tokenization import (
    chat_prompts,
    count_notes,
    load_tokenizer,
    tokenize_pairs,
    tokenizer_from_checkpoint,
    train_tokenizer,
)
from grpo_lightning.metrics import tags

if TYPE_CHECKING:
    from grpo_lightning.data.module import PreferenceDataModule

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def prepare(dm: PreferenceDataModule) -> dict[str, Any]:
    """Load (``dm.load_rows()``), clean, split and tokenise ``dm``'s rows with its settings; log one summary line
    (rows in, kept, skipped per reason) and keep the counts in ``dm.rows_in`` and ``dm.skipped``.

    Returns ``names`` (the groups in id order), ``counts`` (N_g of the training split), ``tokenizer``, ``splits``
    (name → tokenised ``datasets.Dataset``) and ``fingerprint`` (name → the pairs' fingerprints, for resumes)."""
    source = dm.source_name
    raw = dm.load_rows()
    if not all(c in raw.column_names for c in SOURCE_COLUMNS):  # generated or hub rows: number them
        raw = raw.add_column(SOURCE_COLUMNS[0], [source] * len(raw)).add_column(
            SOURCE_COLUMNS[1], list(range(1, len(raw) + 1))
        )
    # A load_rows override may skip source rows itself (GOQA: unusable distributions); they
    # count as rows in, so that rows in = kept + skipped holds for every source.
    dm.rows_in = len(raw) + sum(dm.source_skipped.values())
    ds, skipped = clean_rows(raw, source, merge_group_case=dm.merge_group_case, spellings=dm.groups or ())
    skipped.update(dm.source_skipped)
    dm.skipped = skipped
    names = resolve_groups(sorted(set(ds["group"])), dm.groups, source)
    index = {g: i for i, g in enumerate(names)}
    unlisted = [i for i, g in enumerate(ds["group"]) if g not in index]
    if unlisted:
        skipped["group_not_in_data.groups"] += len(unlisted)
        refs = row_refs(ds.select(unlisted), source)
        log_skipped(source, {"group_not_in_data.groups": refs}, dm.rows_in)
        ds = ds.filter(lambda g: g in index, input_columns="group")
    ds = ds.map(lambda g: {"group_id": index[g]}, input_columns="group")
    if SPLIT_COLUMN in ds.column_names:  # the data's own splits (the generated default has them)
        parts = given_split(ds[SPLIT_COLUMN], source, row_refs(ds, source), SPLITS)
    else:
        parts = stratified_split(ds["group_id"], ds["prompt"], dm.split_fractions, dm.seed)
    splits = {name: ds.select(rows) for name, rows in zip(SPLITS, parts, strict=True)}
    fingerprint = {
        name: pair_fingerprints(sp["group"], sp["prompt"], sp["chosen"], sp["rejected"]) for name, sp in splits.items()
    }
    tokenizer = make_tokenizer(dm.tokenizer_name, dm.tokenizer_gguf_file, dm.tokenizer_vocab_size, splits["train"])
    tokenized, notes = _tokenize(dm, splits, tokenizer, skipped)
    counts = torch.bincount(torch.tensor(tokenized["train"]["group_id"], dtype=torch.long), minlength=len(names))
    _report(dm, names, counts, tokenized, skipped, notes)
    return {
        "names": names,
        "counts": counts.tolist(),
        "tokenizer": tokenizer,
        "splits": tokenized,
        "fingerprint": fingerprint,
    }


def _tokenize(
    dm: PreferenceDataModule, splits: Mapping[str, datasets.Dataset], tokenizer, skipped: Counter
) -> tuple[dict[str, datasets.Dataset], Counter]:
    """Each split numbered (``index``: the pair's row, for predictions), chat-templated if asked, tokenised
    (:func:`tokenize_pairs`); pairs tokenisation empties are dropped and counted in ``skipped``. Returns the
    tokenised splits and the count of each tokenisation note (truncated or re-encoded pairs)."""
    source = dm.source_name
    tokenized = {}
    notes: Counter = Counter()
    emptied: dict[str, list[str]] = defaultdict(list)
    for name, split in splits.items():
        if len(split) == 0:  # map() adds no columns to an empty split
            tokenized[name] = _empty_tokenized(split)
            continue
        split = split.map(lambda _, i: {"index": i}, with_indices=True)
        if dm.chat_template:
            split = split.map(
                lambda b: {"prompt": chat_prompts(tokenizer, b["prompt"])}, batched=True, desc="chat template"
            )
        split = split.map(
            tokenize_pairs,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "max_length": dm.max_length, "max_prompt_length": dm.max_prompt_length},
            desc=f"tokenising {name}",
        )
        for note, n in count_notes(split["note"]).items():
            notes[note] += n
            log.info("%s/%s: %d pairs with %s", source, name, n, note)
        drop = [i for i, k in enumerate(split["keep"]) if not k]
        if drop:
            refs = row_refs(split.select(drop), source)
            for why, ref in zip(split.select(drop)["drop"], refs, strict=True):
                skipped[why] += 1
                emptied[why].append(ref)
            split = split.filter(lambda k: k, input_columns="keep")
        tokenized[name] = split
    log_skipped(source, emptied, dm.rows_in)
    return tokenized, notes


def _report(
    dm: PreferenceDataModule,
    names: list[str],
    counts: torch.Tensor,
    tokenized: Mapping[str, datasets.Dataset],
    skipped: Counter,
    notes: Counter,
) -> None:
    """Checks the row accounting, logs the summary line, refuses a group without training pairs and warns about a
    single group, groups missing from an evaluation split and groups an optimizer step is expected to miss."""
    source = dm.source_name
    coverage = eval_coverage(names, tokenized, dm.split_fractions)
    kept = sum(len(s) for s in tokenized.values())
    if kept + sum(skipped.values()) != dm.rows_in:  # every row is kept or counted, nothing else
        raise AssertionError(f"row accounting: {dm.rows_in} in != {kept} kept + {dict(skipped)} skipped")
    log.info(
        "%s: data prepared: %d rows in, %d kept (train/val/test %s), %d skipped %s; groups %s with N_g %s%s%s",
        source,
        dm.rows_in,
        kept,
        "/".join(str(len(tokenized[s])) for s in SPLITS),
        sum(skipped.values()),
        dict(sorted(skipped.items())),
        names,
        counts.tolist(),
        "".join(
            f"; {split} pairs cover {len(names) - len(missing)}/{len(names)} groups"
            + (f" (none of {missing})" if missing else "")
            for split, missing in coverage.items()
        ),
        f"; truncated or re-encoded pairs {dict(sorted(notes.items()))}" if notes else "",
    )
    empty = [names[g] for g in range(len(names)) if counts[g] == 0]
    if empty:
        raise DataError(
            f"{source}: group(s) {empty} have no training pairs after cleaning "
            f"(skipped: {dict(skipped)}); add data for them or leave them out of data.groups"
        )
    if len(names) == 1:
        log.warning(
            "%s: only one group (%r): group-robust and importance weighting reduce to the plain (uniform) objective",
            source,
            names[0],
        )
    for split, missing in coverage.items():
        if missing:
            log.warning(
                "%s: group(s) %s have no %s pairs, so %s and the other per-group %s metrics do not cover "
                "them; a group needs 3 or more distinct prompts to get a pair in every split",
                source,
                missing,
                split,
                tags.eval_tag(split, "worst_group_loss"),
                split,
            )
    # A group with N_g of N training pairs is expected N_g·B/N times in a step of B pairs; below
    # one, most steps miss it (its α entry waits and its loss estimate rests on one pair or so).
    step = dm.batch_size * dm.accumulate_grad_batches
    expected = counts.double() * step / counts.sum()
    small = {names[g]: round(float(expected[g]), 2) for g in range(len(names)) if expected[g] < 1}
    if small:
        log.warning(
            "%s: group(s) expected less than once per optimizer step of %d pairs (expected pairs per step "
            "%s); most steps will not see them and their loss estimate is noisy",
            source,
            step,
            small,
        )


def _empty_tokenized(split: datasets.Dataset) -> datasets.Dataset:
    """An empty split with the columns tokenisation adds (a split can be empty, e.g. with a
    split fraction of 0 or very few prompts)."""
    ids = datasets.List(datasets.Value("int64"))
    features = datasets.Features(
        {
            **split.features,
            "index": datasets.Value("int64"),
            "prompt_length": datasets.Value("int64"),
            "chosen_ids": ids,
            "rejected_ids": ids,
            "keep": datasets.Value("bool"),
            "drop": datasets.Value("string"),
            "note": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict({k: [] for k in features}, features=features)


def eval_coverage(
    names: list[str], splits: Mapping[str, datasets.Dataset], split_fractions: Sequence[float]
) -> dict[str, list[str]]:
    """Per evaluation split with a fraction > 0: the groups without a pair in it (after
    tokenisation, which may drop a group's only pair there)."""
    out = {}
    for i, split in enumerate(SPLITS[1:], 1):
        if split_fractions[i] > 0:
            present = set(splits[split]["group_id"]) if len(splits[split]) else set()
            out[split] = [g for k, g in enumerate(names) if k not in present]
    return out


def resolve_groups(present: list[str], groups: list[str] | None, source: str) -> list[str]:
    """The group names in id order: ``data.groups`` as listed (each must be in the data), else those present,
    sorted."""
    if not present:
        raise DataError(f"{source}: no usable rows")
    if groups is None:
        return present
    missing = [g for g in groups if g not in present]
    if missing:
        raise DataError(f"data.groups: {missing} not found in {source}; groups there: {present}")
    return list(groups)


def make_tokenizer(name: str | None, gguf_file: str | None, vocab_size: int, train: datasets.Dataset):
    """``data.tokenizer``: a hub id or directory (with ``gguf_file`` inside it, or a full GGUF path alone), a run's
    ``.ckpt`` (the tokenizer saved in it), or ``None``: a byte-level BPE of ``vocab_size`` trained on the training
    split's texts."""
    from grpo_lightning.policies.package_files import resolve

    gguf = resolve(gguf_file)
    if gguf is not None and name is None:  # a full path to a GGUF file
        name, gguf = str(Path(gguf).parent), Path(gguf).name
    if name is not None and gguf is None and name.endswith(".ckpt") and Path(name).is_file():
        log.info("using the tokenizer saved in %s", name)
        return tokenizer_from_checkpoint(name)
    if name is not None:
        return load_tokenizer(name, gguf_file=gguf)
    texts = [p + c for p, c in zip(train["prompt"], train["chosen"], strict=True)] + list(train["rejected"])
    return train_tokenizer(texts, vocab_size)
