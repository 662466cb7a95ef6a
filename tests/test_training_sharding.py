"""Nothing in the module assumes that a rank holds the policy's whole parameters (docs/reliability.md, "Sharded
parameters (FSDP) and what is tested where"). Lightning's FSDP refuses a CPU, so these tests give the code a
sharding strategy object without running one; the FSDP run itself is scripts/gpu_smoke.sh's, on a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from grpo_lightning.callbacks.export import HFExport
from grpo_lightning.training.sharding import fsdp_root, shards_parameters


def test_a_sharding_strategy_is_recognised():
    assert shards_parameters(FSDPStrategy()) and not shards_parameters(DDPStrategy())
    assert fsdp_root(DDPStrategy()) is None and fsdp_root(FSDPStrategy()) is None  # not set up: no root module yet


def test_the_vocabulary_check_reads_the_embedding_size_not_a_weight_shard(tiny_dm_factory, make_module):
    module = make_module(tiny_dm_factory())
    embeddings = module.policy.model.get_input_embeddings()
    name = next(n for n, p in module.named_parameters() if p is embeddings.weight)
    checkpoint = {"state_dict": {name: embeddings.weight.detach().clone()}}
    # What FSDP (use_orig_params) leaves a rank outside forward: a flat piece of the weight.
    embeddings.weight = torch.nn.Parameter(embeddings.weight.detach().flatten()[:7].clone())
    module._check_vocabulary(checkpoint)  # the same vocabulary: accepted
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name][:-1]
    with pytest.raises(ValueError, match=f"vocabulary has {embeddings.num_embeddings - 1} tokens"):
        module._check_vocabulary(checkpoint)


def test_features_that_need_whole_weights_are_refused_under_fsdp(tiny_dm_factory, make_module):
    trainer = SimpleNamespace(strategy=FSDPStrategy(), datamodule=None, log_dir=None)
    module = make_module(tiny_dm_factory(), precompute_ref_logps=True)
    module._trainer = trainer
    with pytest.raises(ValueError, match=r"precompute_ref_logps is not supported .* \(FSDP\)"):
        module.setup("fit")
    with pytest.raises(ValueError, match=r"export.save_on_train_end is not supported .* \(FSDP\)"):
        HFExport(save_on_train_end=True).setup(trainer, module, "fit")
    HFExport(save_on_train_end=True).setup(SimpleNamespace(strategy=DDPStrategy(), log_dir=None), module, "fit")
