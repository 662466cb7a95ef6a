"""Length-grouped training batches (``data.group_by_length``): the same pairs once per epoch in a seeded order,
sorted by length within windows of batches, less padding, the same per-pair log-probabilities (so the same
per-pair losses), and a mid-epoch resume that continues with exactly the batches of an uninterrupted epoch."""

from __future__ import annotations

import json

import pytest
import torch

from grpo_lightning.data import PreferenceDataModule
from grpo_lightning.data.loaders import EpochShuffle, LengthGroupedShuffle
from grpo_lightning.policies import CausalLM, TinyLlama

WORDS = ["tea", "coffee", "rain", "sun", "river", "hill", "market", "school", "bridge", "garden"]


def test_the_order_is_a_seeded_permutation_of_length_sorted_batches():
    lengths = [(7 * i) % 23 for i in range(30)]  # 0..22 in a scrambled order, with repeats
    sampler = LengthGroupedShuffle(lengths, batch_size=4, seed=3, megabatch_batches=2)  # windows of 8 indices
    plain = EpochShuffle(30, seed=3)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        plain.set_epoch(epoch)
        order, shuffled = list(sampler), list(plain)
        assert sorted(order) == list(range(30))  # every pair once
        assert order == list(sampler)  # deterministic
        windows = [set(shuffled[start : start + 8]) for start in range(0, 30, 8)]
        expected_batches = []  # each window of the plain shuffle sorted by length (ties in shuffled order), cut
        for start in range(0, 30, 8):
            window = shuffled[start : start + 8]
            ranked = sorted(window, key=lambda i: -lengths[i])
            expected_batches += [ranked[k : k + 4] for k in range(0, len(ranked), 4)]
        batches = [order[k : k + 4] for k in range(0, 30, 4)]
        assert sorted(batches) == sorted(expected_batches)
        assert batches[-1] == expected_batches[-1]  # the short batch (30 = 7 × 4 + 2) stays last
        assert all(any(set(b) <= w for w in windows) for b in batches)
        orders.append(order)
    assert orders[0] != orders[1]  # a new order each epoch
    assert [order[k : k + 4] for k in range(0, 28, 4)] != expected_batches[:7]  # batches shuffled, not sorted


def _write_pairs(path, n=48):
    """Prompts of 1 to 24 words, so lengths vary far more than in a batch of the generated data."""
    rows = []
    for i in range(n):
        prompt = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + (i * 5) % 24)) + "?"
        rows.append({"prompt": prompt, "chosen": " yes", "rejected": " no", "group": ["north", "south"][i % 2]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return _write_pairs(tmp_path_factory.mktemp("len") / "pairs.jsonl")


def _dm(path, grouped: bool, workers: int = 0) -> PreferenceDataModule:
    return PreferenceDataModule(
        path=str(path), max_length=96, max_prompt_length=80, batch_size=4, split_fractions=(1.0, 0.0, 0.0),
        seed=5, group_by_length=grouped, num_workers=workers,
    )  # fmt: skip


# Plain and length-grouped order in the main process, and with 2 workers (which draw batches ahead, from the
# moment the loader's iterator is created).
LOADERS = pytest.mark.parametrize(
    ("grouped", "workers"), [(True, 0), (False, 0), (True, 2)], ids=["group_by_length", "plain", "2-workers"]
)


def _padding(batches) -> int:
    return sum(int((b["attention_mask"] == 0).sum()) for b in batches)


def test_grouped_batches_pad_less_and_give_every_pair_the_same_log_probs(pairs_file):
    plain, grouped = _dm(pairs_file, False), _dm(pairs_file, True)
    policy = CausalLM(
        tiny=TinyLlama(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).build(plain.tokenizer)
    logps = {}
    for name, dm in (("plain", plain), ("grouped", grouped)):
        batches = list(dm.train_dataloader())
        assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(len(dm.dataset("train"))))
        logps[name] = {"padding": _padding(batches)}
        with torch.no_grad():
            for b in batches:
                chosen, rejected = policy.pair_logps(b)
                for j, i in enumerate(b["index"].tolist()):
                    logps[name][i] = (chosen[j], rejected[j])
    assert logps["grouped"]["padding"] < 0.5 * logps["plain"]["padding"], (
        logps["grouped"]["padding"],
        logps["plain"]["padding"],
    )
    for i in range(len(plain.dataset("train"))):
        # The per-pair losses are functions of these (and of the reference's, the same model frozen).
        torch.testing.assert_close(logps["grouped"][i], logps["plain"][i], atol=1e-5, rtol=1e-5)


class _CountingCollate:
    """The loader's collate function, counting the batches it collates."""

    def __init__(self, collate) -> None:
        self.collate, self.calls = collate, 0

    def __call__(self, rows):
        self.calls += 1
        return self.collate(rows)


@LOADERS
def test_loader_resumes_mid_epoch_with_the_uninterrupted_batches_without_loading_the_skipped_ones(
    pairs_file, grouped, workers
):
    straight = _dm(pairs_file, grouped).train_dataloader()
    straight.sampler.set_epoch(1)
    expected = [b["index"].tolist() for b in straight]
    assert len(expected) == 12  # 48 pairs in batches of 4

    interrupted = _dm(pairs_file, grouped, workers).train_dataloader()
    interrupted.sampler.set_epoch(1)
    seen = []
    for k, batch in enumerate(interrupted):
        seen.append(batch["index"].tolist())
        if k == 4:
            break
    state = interrupted.state_dict()

    resumed = _dm(pairs_file, grouped, workers).train_dataloader()  # a new process: new module, new loader
    resumed.load_state_dict(state)
    counting = resumed.collate_fn = _CountingCollate(resumed.collate_fn)
    iterator = iter(resumed)  # Lightning creates the iterator, then sets the epoch
    resumed.sampler.set_epoch(1)
    rest = [b["index"].tolist() for b in iterator]
    assert seen + rest == expected
    if not workers:  # (workers collate in their own processes)
        # Only the 7 remaining batches were collated (the fetcher collates every batch it loads): the 5 before
        # the checkpoint were neither loaded nor collated again.
        assert counting.calls == len(rest) == 7

    # The next epoch is whole, in the order of an uninterrupted run.
    resumed.sampler.set_epoch(2)
    straight.sampler.set_epoch(2)
    assert [b["index"].tolist() for b in resumed] == [b["index"].tolist() for b in straight]
    if not workers:
        assert counting.calls == 7 + 12


@LOADERS
def test_a_state_of_a_finished_epoch_resumes_with_the_whole_next_epoch(pairs_file, grouped, workers):
    """A checkpoint at the end of epoch 0 holds every index of it as handed out; the resumed run starts epoch 1,
    which must not skip that many of its own. Lightning draws exactly the loader's length, so the iterator has
    not seen its end when the checkpoint is written, and the same iterator goes on with epoch 1."""
    finished = _dm(pairs_file, grouped, workers).train_dataloader()
    finished.sampler.set_epoch(0)
    epoch0 = iter(finished)
    assert len([next(epoch0) for _ in range(len(finished))]) == 12
    resumed = _dm(pairs_file, grouped, workers).train_dataloader()
    resumed.load_state_dict(finished.state_dict())
    iterator = iter(resumed)
    resumed.sampler.set_epoch(1)
    straight = _dm(pairs_file, grouped).train_dataloader()
    straight.sampler.set_epoch(1)
    assert [b["index"].tolist() for b in iterator] == [b["index"].tolist() for b in straight]


@pytest.mark.parametrize("n", [30, 29])
def test_ranks_share_each_length_grouped_global_batch(n):
    """Under DDP (2 ranks, 2 pairs each per step) rank r's k-th batch is its round-robin half of the k-th batch of
    the order grouped with global batches of 4, so the grouping holds on both ranks; the ranks' indices cover every
    pair (29: one padded with the order's first index, as DistributedSampler pads)."""
    lengths = [(7 * i) % 23 for i in range(n)]
    whole = LengthGroupedShuffle(lengths, batch_size=4, seed=3, megabatch_batches=2)
    ranks = [LengthGroupedShuffle(lengths, batch_size=2, seed=3, megabatch_batches=2, num_replicas=2, rank=r) for r in (0, 1)]  # fmt: skip
    for epoch in (0, 1):
        for s in (whole, *ranks):
            s.set_epoch(epoch)
        order, (r0, r1) = list(whole), (list(r) for r in ranks)
        assert len(r0) == len(r1) == 15
        padded = order + order[: 30 - n]
        for k in range(0, 15, 2):  # batches of 2 per rank
            assert sorted(r0[k : k + 2] + r1[k : k + 2]) == sorted(padded[2 * k : 2 * k + 4])
        assert sorted(set(r0 + r1)) == list(range(n))
