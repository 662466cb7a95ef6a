"""training/reference.py: reference log-probs computed once (or read from the cache file) equal the live reference's."""

from __future__ import annotations

import copy
import functools

import lightning as L
import pytest
import torch
from conftest import TINY_DATA, TINY_LLAMA, StubTokenizer, build_tiny_policy, fit_quietly

from grpo_lightning.core.losses import IPO
from grpo_lightning.core.weighting import RobustWeighting
from grpo_lightning.data.tokenization import CHOSEN_KEY, REF_COLUMNS, REJECTED_KEY, PairCollator
from grpo_lightning.policies import CausalLM, TinyLlama
from grpo_lightning.training.reference import ReferenceCacheError, ReferenceLogps, data_fingerprint, weights_fingerprint

TINY = TinyLlama(**TINY_LLAMA)
_Tok, _build, _fit = StubTokenizer, build_tiny_policy, fit_quietly


@pytest.mark.slow
def test_cached_reference_equals_live(tiny_dm_factory, make_module, tmp_path):
    """Same α and parameters after 3 robust IPO steps, live reference vs cached; the cached run
    freed its reference copy; a second run reuses the file."""
    results = []
    for precompute in (False, True, True):
        dm = tiny_dm_factory(batch_size=8)
        module = make_module(
            dm,
            loss=IPO(beta=0.1),
            weighting=RobustWeighting(step_size=0.5),
            optimizer=functools.partial(torch.optim.SGD, lr=0.01),
            lr_scheduler=None,
            precompute_ref_logps=precompute,
            ref_cache_dir=str(tmp_path / "cache"),
        )
        _fit(module, dm, max_steps=3)
        assert (module.policy.reference is None) == precompute
        results.append((module.log_alpha.clone(), {k: v.clone() for k, v in module.policy.model.state_dict().items()}))
    assert len(list((tmp_path / "cache").iterdir())) == 1
    for alpha, params in results[1:]:
        # The cached log-probs come from a separate reference pass whose batches are padded otherwise, so they equal
        # the live ones to float32 rounding, not bitwise (an AVX-512 CPU's kernels block by shape): a sequence
        # log-prob of ≈ -50 to ~3e-6, an IPO loss 2(h - 1/(2β)) ≈ 10 times that, log α (η 0.5, 3 steps) to ~1e-5
        # (measured 1.5e-5 on log α of -13.7, 1.1e-6 on parameters of up to 2.3). lr 0.01 keeps the run
        # well-conditioned: with lr 0.5 the parameters reached ~1e7 and rounding differences grew without bound.
        torch.testing.assert_close(alpha, results[0][0], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(torch.softmax(alpha, 0), torch.softmax(results[0][0], 0), rtol=1e-4, atol=1e-7)
        for k, v in params.items():
            torch.testing.assert_close(v, results[0][1][k], rtol=1e-5, atol=1e-5)


def test_cached_values_equal_live_losses(tiny_dm_factory, make_module, tmp_path):
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, loss=IPO(), precompute_ref_logps=True, ref_cache_dir=str(tmp_path))
    batch = next(iter(dm.val_dataloader()))
    live = module.pair_outputs(batch, module.batch_reference(batch)).losses
    _fit(module, dm, max_steps=0)
    assert module.reference_cache.logps is not None and module.policy.reference is None
    batch = next(iter(dm.val_dataloader()))  # the val split now carries the columns, so its batches do
    assert CHOSEN_KEY in batch and REJECTED_KEY in batch
    cached = module.pair_outputs(batch, module.batch_reference(batch)).losses
    torch.testing.assert_close(cached, live, rtol=1e-6, atol=1e-6)


class _FirstTrainBatch(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.batch = {k: v.detach().clone() for k, v in batch.items()}


def test_reference_logps_are_columns_of_the_tokenised_data(tiny_dm_factory, make_module, tmp_path):
    """After fit start every tokenised split carries the reference log-probs as columns; a training batch's values
    are those of a direct reference forward over the same pairs (an identical, independently built reference)."""
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, loss=IPO(), precompute_ref_logps=True, ref_cache_dir=str(tmp_path))
    reference = copy.deepcopy(module.policy)  # the reference weights, kept before the fit frees them
    record = _FirstTrainBatch()
    _fit(module, dm, max_steps=1, callbacks=[record])
    assert module.policy.reference is None
    for split in ("train", "val", "test"):
        ds = dm.dataset(split)
        assert set(REF_COLUMNS) <= set(ds.column_names), split
        assert ds.features[CHOSEN_KEY].dtype == "float32"
    batch = record.batch
    assert batch[CHOSEN_KEY].dtype == torch.float32 and batch[CHOSEN_KEY].shape == batch["index"].shape
    # The same pairs, collated apart from the loader, through the reference directly.
    train = dm.dataset("train")
    rows = {int(i): r for r, i in enumerate(train["index"])}
    pairs = [train[rows[int(i)]] for i in batch["index"]]
    direct = PairCollator(dm.tokenizer.pad_token_id)(pairs)
    reference.eval()
    with torch.no_grad():
        chosen, rejected = reference.reference_pair_logps(direct)
    torch.testing.assert_close(batch[CHOSEN_KEY], chosen.float(), rtol=1e-6, atol=0)
    torch.testing.assert_close(batch[REJECTED_KEY], rejected.float(), rtol=1e-6, atol=0)
    torch.testing.assert_close(direct[CHOSEN_KEY], batch[CHOSEN_KEY], rtol=0, atol=0)  # the collator passes them


def test_test_after_fit_reads_the_columns_of_a_fresh_data_module(tiny_dm_factory, make_module, tmp_path):
    """``trainer.test`` after a cached fit, on a new data module of the same data: the reference is freed, so the
    test batches must carry the columns (added in ``setup``); a data module of other data gets none."""
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, loss=IPO(), precompute_ref_logps=True, ref_cache_dir=str(tmp_path))
    trainer = _fit(module, dm, max_steps=1)
    fresh = tiny_dm_factory(batch_size=8)
    assert CHOSEN_KEY not in fresh.dataset("test").column_names
    trainer.test(module, datamodule=fresh, verbose=False)
    assert CHOSEN_KEY in fresh.dataset("test").column_names
    torch.testing.assert_close(fresh.dataset("test")[CHOSEN_KEY], dm.dataset("test")[CHOSEN_KEY], rtol=0, atol=0)
    other = tiny_dm_factory(batch_size=8, generated={**TINY_DATA["generated"], "seed": 1})
    other.setup()
    stale = torch.zeros(len(other.dataset("test")))
    other.set_reference_logps("test", (stale, stale))  # another reference's values, say
    with pytest.raises(RuntimeError, match="no reference model"):
        trainer.test(module, datamodule=other, verbose=False)
    assert CHOSEN_KEY not in other.dataset("test").column_names, "stale columns are dropped"


def test_cache_refuses_other_reference_or_data(tiny_dm_factory, tmp_path):
    dm = tiny_dm_factory()
    dm.setup()
    data = {"train": data_fingerprint(dm.dataset("train"))}
    assert data["train"] == data_fingerprint(tiny_dm_factory().dataset("train")), "content, not object id"
    assert data["train"] != data_fingerprint(dm.dataset("val"))
    ref_a = weights_fingerprint(_build().reference.state_dict())
    ref_b = weights_fingerprint(
        CausalLM(tiny=TinyLlama(**{**TINY.__dict__, "seed": 1})).build(_Tok()).reference.state_dict()
    )
    assert ref_a != ref_b
    values = {"train": {"index": torch.arange(3), "chosen": torch.randn(3), "rejected": torch.randn(3)}}
    path = ReferenceLogps(values, data=data, reference=ref_a).save(tmp_path / "c.safetensors")
    loaded = ReferenceLogps.load(path, data=data, reference=ref_a)
    torch.testing.assert_close(loaded.lookup("train", torch.tensor([2, 0]))[0], values["train"]["chosen"][[2, 0]])
    with pytest.raises(ReferenceCacheError, match="another reference"):
        ReferenceLogps.load(path, data=data, reference=ref_b)
    with pytest.raises(ReferenceCacheError, match="other data"):
        ReferenceLogps.load(path, data={"train": "0" * 64}, reference=ref_a)
    assert ReferenceLogps.file_name(data, ref_a, {}) != ReferenceLogps.file_name(data, ref_b, {})
