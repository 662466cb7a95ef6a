"""Which split each pair belongs to, and what a checkpoint records of the pairs it was trained with.

- :func:`stratified_split`: train/val/test per group from a keyed hash of each pair's prompt (:func:`prompt_position`),
  so a pair's split depends on its prompt and the seed only, and all pairs of one prompt share a split.
- :func:`given_split`: the data's own ``split`` column, used as given.
- :func:`pair_fingerprints` / :func:`fingerprint_changes`: a set of pair hashes per split, so a resume or
  re-evaluation on other data can say how many pairs differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grpo_lightning.data.io import SPLIT_COLUMN, DataError


def given_split(values: Sequence, source: str, refs: Sequence[str], names: Sequence[str]) -> list[np.ndarray]:
    """Row indices of the splits named in a ``split`` column (values among ``names``); any other
    value is a :class:`DataError` naming the first rows that carry one."""
    arr = np.asarray([str(v).strip().lower() if v is not None else "" for v in values], dtype=object)
    bad = np.flatnonzero(~np.isin(arr, list(names)))
    if len(bad):
        shown = "; ".join(f"{refs[i]}: {values[i]!r}" for i in bad[:5])
        raise DataError(f"{source}: column {SPLIT_COLUMN!r} must be one of {list(names)} ({shown})")
    return [np.flatnonzero(arr == name) for name in names]


def pair_fingerprints(groups: Sequence[str], prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str]):
    """One 63-bit hash per pair (group, prompt, chosen, rejected), sorted, as an int64 tensor: what a checkpoint
    records of the pairs of each split it was trained with, so a resume or re-evaluation on other data can say
    how many pairs differ (a set, not one digest, so the number can be told)."""
    import torch

    out = [
        int.from_bytes(hashlib.blake2b("\x1f".join(map(str, row)).encode("utf-8"), digest_size=8).digest(), "big") >> 1
        for row in zip(groups, prompts, chosen, rejected, strict=True)
    ]
    return torch.tensor(sorted(out), dtype=torch.int64)


def fingerprint_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, int]:
    """How the pairs of ``current`` differ from those of ``saved`` (each ``{split: pair_fingerprints}``):
    ``removed`` (the saved data's pairs not in the current data), ``added`` (the current data's pairs not in the
    saved data; an edited pair counts in both) and ``seen_in_training`` (current val/test pairs that were training
    pairs of the saved data)."""
    as_set = lambda splits, names: {int(x) for n in names if n in splits for x in splits[n].tolist()}  # noqa: E731
    before, now = as_set(saved, saved.keys()), as_set(current, current.keys())
    trained = as_set(saved, ["train"])
    evaluated = as_set(current, [n for n in current if n != "train"])
    return {"removed": len(before - now), "added": len(now - before), "seen_in_training": len(evaluated & trained)}


def prompt_position(prompt: str, seed: int) -> float:
    """Where a prompt falls in [0, 1): a keyed hash (BLAKE2b, keyed with the seed) of its text alone.

    A pair's split is read off this number, so it depends on the pair's prompt and the seed only, never on the
    other rows: adding or removing rows moves no kept pair between train, val and test (a seeded permutation of
    all prompts, as before, re-drew every split at any change of the rows and put training pairs into the test
    split of a re-evaluation)."""
    digest = hashlib.blake2b(str(prompt).encode("utf-8"), digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def stratified_split(
    groups: Sequence[int], prompts: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Row indices of the train/val/test splits, all pairs of one prompt in the same split (so a prompt seen in
    training never scores a validation pair).

    A prompt is in split i when its :func:`prompt_position` lies in ``[F_{i-1}, F_i)`` (``F`` the cumulative
    fractions): the split of a pair depends on its prompt and the seed, not on the other rows, so adding or
    removing rows does not move it, and a split with fraction 0 stays empty. Two exceptions keep every group
    trainable and evaluable, each a function of that group's own prompts: a group with fewer distinct prompts
    than splits of fraction > 0 is all training (as before); a group with enough whose hash leaves one of those
    splits empty gets one prompt moved there, from its largest split, the one whose position lies nearest the
    empty split's interval. Only a change that empties (or fills) a split of a group moves a pair of that group;
    a re-evaluation on changed data counts such pairs (``fingerprint_changes``)."""
    bounds = np.concatenate([[0.0], np.cumsum(np.asarray(fractions, dtype=float))])
    bounds[-1] = 1.0 + 1e-12  # positions are < 1; rounding of the cumulative sum must not lose the last split
    groups_arr = np.asarray(groups)
    uniq, inverse = np.unique(np.asarray(prompts, dtype=object).astype(str), return_inverse=True)
    position = np.array([prompt_position(p, seed) for p in uniq])
    row_split = (np.searchsorted(bounds, position, side="right") - 1)[inverse]
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    for g in np.unique(groups_arr):
        rows = np.flatnonzero(groups_arr == g)
        own = {int(k): int(s) for k, s in zip(inverse[rows], row_split[rows], strict=True)}  # prompt -> split
        if len(own) < len(wanted):  # too few prompts to be in every split: all train
            row_split[rows] = 0
            continue
        for target in wanted:
            members = {s: sorted(k for k, v in own.items() if v == s) for s in wanted}
            if members[target]:
                continue
            donor = max((s for s in wanted if len(members[s]) > 1), key=lambda s: (len(members[s]), -s))
            centre = (bounds[target] + min(bounds[target + 1], 1.0)) / 2
            own[min(members[donor], key=lambda k: (abs(position[k] - centre), k))] = target
        row_split[rows] = [own[int(k)] for k in inverse[rows]]
    return [np.flatnonzero(row_split == i) for i in range(len(fractions))]
