"""Tests of grpo_lightning.data.sources.generated: the generated group-opinion data (GeneratedOpinions)."""

from __future__ import annotations

from collections import Counter

import pytest

from grpo_lightning.data.sources.generated import GROUPS, GeneratedOpinions


def _split_rows(rows, split):
    cols = ("prompt", "chosen", "rejected", "group")
    return [tuple(rows[c][i] for c in cols) for i, s in enumerate(rows["split"]) if s == split]


def test_generated_data_shape_and_determinism():
    rows = GeneratedOpinions(num_pairs=400, seed=3).rows()
    assert rows == GeneratedOpinions(num_pairs=400, seed=3).rows()
    assert rows != GeneratedOpinions(num_pairs=400, seed=4).rows()
    train = _split_rows(rows, "train")
    counts = Counter(r[3] for r in train)
    assert [counts[g] for g in GROUPS] == [180, 100, 60, 40, 20]  # 45/25/15/10/5 %
    assert len(set(train)) == 400  # no pair repeats
    assert all(c != r for c, r in zip(rows["chosen"], rows["rejected"], strict=True))
    # By default the prompt does not say who answers (the groups conflict on the same prompt).
    assert rows["prompt"][0].startswith("Opinion on: ")
    assert not any(g in p for p in rows["prompt"] for g in GROUPS)
    assert "\nPlease select the best response:\nA. " in rows["prompt"][0]
    named = GeneratedOpinions(num_pairs=400, seed=3, name_groups=True).rows()
    assert named["prompt"][0].startswith(f"Opinion of people in {named['group'][0]} on: ")


def test_generated_val_and_test_questions_are_never_trained_on():
    """Split by question: no val/test prompt occurs in training, val and test share none, and
    every group is scored on all 3 wrong options of every held-out question (34 → 102 val,
    67 → 201 test pairs per group), whatever the training imbalance."""
    for seed in (0, 1, 2):
        rows = GeneratedOpinions(num_pairs=1200, seed=seed).rows()
        prompts = {s: {r[0] for r in _split_rows(rows, s)} for s in ("train", "val", "test")}
        assert not prompts["train"] & prompts["val"]
        assert not prompts["train"] & prompts["test"]
        assert not prompts["val"] & prompts["test"]
        assert (len(prompts["val"]), len(prompts["test"])) == (34, 67)
        for split, n in (("val", 102), ("test", 201)):
            pairs = _split_rows(rows, split)
            assert Counter(r[3] for r in pairs) == dict.fromkeys(GROUPS, n)
            assert len(set(pairs)) == len(pairs)
    small = GeneratedOpinions(num_pairs=200, shares=(0.2,) * 5, seed=0).rows()
    assert _split_rows(small, "test") == _split_rows(GeneratedOpinions(num_pairs=1200, seed=0).rows(), "test")
    assert "split" not in GeneratedOpinions(num_pairs=200, val_questions=0, test_questions=0).rows()


def test_generated_question_split_covers_every_frame_and_keeps_every_subject_in_training():
    """Each frame holds out 16–17 of its 40 subjects (the frame decides who departs), and each
    subject is held out in at most 3 of its 6 frames. By hand: 34 val questions over 6 frames are
    6,6,6,6,5,5; 67 test questions 12,11,11,11,11,11, given to the frames in reverse order so the
    big shares do not meet: held out 6+11, 6+11, 6+11, 6+11, 5+11, 5+12."""
    split = GeneratedOpinions(seed=5).question_splits().reshape(6, 60)  # (frame, subject)
    assert (split > 0).sum(axis=1).tolist() == [17, 17, 17, 17, 16, 17]
    assert (split == 1).sum(axis=1).tolist() == [6, 6, 6, 6, 5, 5]
    assert (split > 0).sum(axis=0).max() <= 3
    big = GeneratedOpinions(num_pairs=800, val_questions=60, test_questions=120).question_splits().reshape(6, 60)
    assert (big > 0).sum(axis=0).max() <= 3 and (big > 0).sum() == 180


def test_generated_seen_questions_score_the_training_questions_with_the_same_training_pairs():
    held = GeneratedOpinions(seed=0).rows()
    seen = GeneratedOpinions(seed=0, eval_questions="seen").rows()
    assert _split_rows(seen, "train") == _split_rows(held, "train")
    train_prompts = {r[0] for r in _split_rows(held, "train")}
    for split, n in (("val", 102), ("test", 201)):
        pairs = _split_rows(seen, split)
        assert {r[0] for r in pairs} <= train_prompts
        assert Counter(r[3] for r in pairs) == dict.fromkeys(GROUPS, n)


def test_generated_group_sizes_and_dissent_are_independent_settings():
    """A group agrees with a group that never departs on the frames it does not depart on:
    agreement 1 − departed_frames[g]/6, whatever its share."""
    gen = GeneratedOpinions(num_pairs=1000, shares=(0.5, 0.3, 0.2), departed_frames=(0, 6, 2), seed=0)
    preferred = gen.preferred()
    agree = [(preferred[g] == preferred[0]).mean() for g in range(3)]
    assert agree == pytest.approx([1, 0, 4 / 6])
    rows = gen.rows()
    counts = Counter(r[3] for r in _split_rows(rows, "train"))
    assert counts == {"Avalon": 500, "Brightwater": 300, "Cedarholm": 200}
    for p, c, g in zip(rows["prompt"], rows["chosen"], rows["group"], strict=True):
        if g == "Brightwater" and p.startswith("Opinion on: How much do you trust public transport?"):
            assert c == " " + "ABCD"[preferred[1, 0]]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shares": (0.5, 0.5), "departed_frames": (0, 1, 2)}, "one entry per group"),
        ({"shares": (0.7, 0.7), "departed_frames": (0, 1)}, "sum to 1"),
        ({"shares": (0.5, 0.5), "departed_frames": (0, 7)}, r"departed_frames must lie in \[0, 6\]"),
        ({"val_questions": 90, "test_questions": 91}, "half the questions"),
        ({"num_pairs": 1600, "val_questions": 90, "test_questions": 90}, "exceed its 540 distinct pairs"),
        ({"val_questions": 0}, "or neither"),
        ({"eval_questions": "unseen"}, "held_out or seen"),
    ],
)
def test_generated_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        GeneratedOpinions(**settings)
