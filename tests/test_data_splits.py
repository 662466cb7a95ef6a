"""data/splits.py: which split each pair belongs to (a keyed hash of its prompt, or the data's own split column)."""

from __future__ import annotations

import pytest

from grpo_lightning.data import DataError
from grpo_lightning.data.module import SPLITS
from grpo_lightning.data.splits import given_split, stratified_split


def test_split_is_stratified_seeded_and_keeps_prompts_together():
    groups = [0] * 50 + [1] * 20 + [2] * 5
    prompts = [f"p{i // 2}" for i in range(75)]  # pairs share prompts two by two
    parts = stratified_split(groups, prompts, (0.8, 0.1, 0.1), seed=1)
    assert sorted(i for p in parts for i in p) == list(range(75))
    assert [p.tolist() for p in parts] == [
        p.tolist() for p in stratified_split(groups, prompts, (0.8, 0.1, 0.1), seed=1)
    ]
    for p in parts:  # every group in every split
        assert {groups[i] for i in p} == {0, 1, 2}
    seen = [{prompts[i] for i in p} for p in parts]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    train_g0 = sum(groups[i] == 0 for i in parts[0])
    assert 36 <= train_g0 <= 44  # ≈ 80 % of 50


def test_a_pairs_split_does_not_depend_on_the_other_rows():
    """The split of a prompt is a keyed hash of its text with the seed: removing 10 rows and appending 15 leaves
    every remaining pair in its split (no split of a group emptied here), and another seed draws another split."""
    import random

    rng = random.Random(0)
    groups = [rng.randrange(3) for _ in range(300)]
    prompts = [f"question {rng.randrange(120)}" for _ in range(300)]

    def split_of(gs, ps, seed=0):
        parts = stratified_split(gs, ps, (0.8, 0.1, 0.1), seed)
        return {(gs[i], ps[i]): name for name, part in zip(("train", "val", "test"), parts, strict=True) for i in part}

    before = split_of(groups, prompts)
    keep = [i for i in range(300) if i % 30 != 7]  # 10 rows removed
    groups2 = [groups[i] for i in keep] + [rng.randrange(3) for _ in range(15)]
    prompts2 = [prompts[i] for i in keep] + [f"new question {k}" for k in range(15)]
    after = split_of(groups2, prompts2)
    shared = before.keys() & after.keys()
    assert len(shared) > 100 and all(before[k] == after[k] for k in shared)
    assert split_of(groups, prompts, seed=1) != before


def test_a_split_column_with_another_value_is_refused_naming_the_row():
    parts = given_split(["train", "val", " Test", "train"], "pairs.jsonl", [f"row {i}" for i in range(1, 5)], SPLITS)
    assert [p.tolist() for p in parts] == [[0, 3], [1], [2]]
    with pytest.raises(DataError, match=r"pairs.jsonl: column 'split' .*row 2: 'dev'"):
        given_split(["train", "dev"], "pairs.jsonl", ["row 1", "row 2"], SPLITS)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.98, 0.01, 0.01), (0.6, 0.2, 0.2)])
def test_every_group_with_three_prompts_gets_a_val_and_a_test_pair(fractions):
    sizes = [3, 4, 5, 7, 12, 40]
    groups = [g for g, n in enumerate(sizes) for _ in range(n)]
    prompts = [f"p{i}" for i in range(len(groups))]
    for seed in range(5):
        train, val, test = stratified_split(groups, prompts, fractions, seed)
        for part in (train, val, test):
            assert {groups[i] for i in part} == set(range(len(sizes))), (seed, fractions)
