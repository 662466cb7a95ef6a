"""callbacks/export.py: AdapterExport writes a LoRA policy's adapter alone, and the next stage keeps training it."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from conftest import build_tiny_policy

from grpo_lightning.callbacks.export import AdapterExport
from grpo_lightning.policies.lora import LoraSettings


def _lora_state(model) -> dict[str, torch.Tensor]:
    return {k.replace(".default", ""): v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_the_adapter_export_is_what_the_next_stage_loads(tmp_path):
    policy = build_tiny_policy(lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():  # a trained adapter: B is 0 at initialisation, which any load would reproduce
        for name, p in policy.model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p))
    trained = _lora_state(policy.model)
    assert trained and all(v.abs().sum() > 0 for v in trained.values())

    out = tmp_path / "hf_adapter"
    AdapterExport(dirpath=str(out)).on_train_end(SimpleNamespace(is_global_zero=True), SimpleNamespace(policy=policy))
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()

    # The preference stage: the same base (seeded tiny Llama) with the saved adapter, trainable.
    resumed = build_tiny_policy(adapter=str(out))
    loaded = _lora_state(resumed.model)
    assert loaded.keys() == trained.keys()
    for key, value in trained.items():
        torch.testing.assert_close(loaded[key], value)
    assert all(p.requires_grad for n, p in resumed.model.named_parameters() if "lora_" in n)


def test_a_policy_without_an_adapter_or_another_rank_writes_nothing(tmp_path):
    out = tmp_path / "hf_adapter"
    full = build_tiny_policy()  # no LoRA: nothing to export alone
    AdapterExport(dirpath=str(out)).on_train_end(SimpleNamespace(is_global_zero=True), SimpleNamespace(policy=full))
    lora = build_tiny_policy(lora=LoraSettings(r=2, alpha=4, dropout=0.0, target_modules=["q_proj"]))
    AdapterExport(dirpath=str(out)).on_train_end(SimpleNamespace(is_global_zero=False), SimpleNamespace(policy=lora))
    assert not out.exists()
