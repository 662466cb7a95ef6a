"""The local-GGUF loaders on a GGUF file the test writes (tests/gguf_writer.py): the policy by full path and
by directory + file name, and the tokenizer through ``load_tokenizer`` and the data module."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gguf")

from gguf_writer import write_llama_gguf  # noqa: E402  (tests/ is on sys.path under pytest's rootdir conftest)

from grpo_lightning.data import GeneratedOpinions, PreferenceDataModule  # noqa: E402
from grpo_lightning.data.tokenization import load_tokenizer, train_tokenizer  # noqa: E402
from grpo_lightning.policies import CausalLM  # noqa: E402

SENTENCES = [
    "Opinion of people in Avalon on: tea?\nA. Yes\nB. No",
    "The quick brown fox jumps over the lazy dog, twice.",
    "Héllo wörld: 1234 — ☃  two  spaces\n\nand<eos>specials<pad>",
]


def _llama(tokenizer, *, tied: bool, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: attn_k is permuted with the KV head count
        intermediate_size=64,
        max_position_embeddings=128,
        rope_theta=50000.0,  # not the default, so the metadata has to carry it
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 10 + [GeneratedOpinions(num_pairs=50).rows()["prompt"][0]], vocab_size=320)


@pytest.fixture(scope="module")
def written(tokenizer, tmp_path_factory):
    """{tied: (original model, GGUF path)}."""
    out = {}
    for tied in (False, True):
        model = _llama(tokenizer, tied=tied, seed=int(tied))
        path = write_llama_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / f"tiny-{tied}.gguf")
        out[tied] = (model, path)
    return out


def _batch(tokenizer):
    enc = tokenizer(SENTENCES[:2], return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[:, :4] = -100
    labels[enc["attention_mask"] == 0] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def test_policy_from_gguf_by_full_path_and_by_directory(tokenizer, written):
    model, path = written[False]
    batch = _batch(tokenizer)
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for spec in (CausalLM(gguf_file=str(path)), CausalLM(name_or_path=str(path.parent), gguf_file=path.name)):
        policy = spec.build(tokenizer)
        cfg = policy.model.config
        assert (cfg.num_key_value_heads, cfg.tie_word_embeddings) == (2, False)
        assert cfg.rope_parameters["rope_theta"] == 50000.0
        with torch.no_grad():
            logits = policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
        # The reference is the same weights, frozen.
        torch.testing.assert_close(policy.pair_logps(batch), policy.reference_pair_logps(batch), atol=1e-5, rtol=0)


def test_policy_from_gguf_with_tied_embeddings(tokenizer, written):
    model, path = written[True]
    policy = CausalLM(gguf_file=str(path)).build(tokenizer)
    assert policy.model.config.tie_word_embeddings
    batch = _batch(tokenizer)
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def _check_same_tokenizer(loaded, original):
    for text in SENTENCES:
        assert (
            loaded(text, add_special_tokens=False)["input_ids"] == original(text, add_special_tokens=False)["input_ids"]
        )
        assert loaded(text)["input_ids"] == original(text)["input_ids"]  # no BOS/EOS added either
    assert (loaded.eos_token_id, loaded.pad_token_id) == (original.eos_token_id, original.pad_token_id)
    n = len(original)
    assert loaded.convert_ids_to_tokens(list(range(n))) == original.convert_ids_to_tokens(list(range(n)))
    # transformers builds a GGUF byte-level tokenizer as a GPT2Tokenizer, whose default special token
    # "<|endoftext|>" is appended (id len(original)) when the vocabulary lacks it; nothing else is added.
    assert loaded.convert_ids_to_tokens(list(range(n, len(loaded)))) in ([], ["<|endoftext|>"])


def test_tokenizer_from_gguf(tokenizer, written):
    _, path = written[False]
    _check_same_tokenizer(load_tokenizer(str(path.parent), gguf_file=path.name), tokenizer)


def test_data_module_reads_the_tokenizer_from_gguf(tokenizer, written):
    _, path = written[False]
    common = {
        "generated": GeneratedOpinions(num_pairs=50, val_questions=2, test_questions=2, seed=0),
        "max_length": 64,
        "max_prompt_length": 56,
    }
    for kwargs in (
        {"tokenizer_gguf_file": str(path)},
        {"tokenizer": str(path.parent), "tokenizer_gguf_file": path.name},
    ):
        dm = PreferenceDataModule(**common, **kwargs)
        _check_same_tokenizer(dm.tokenizer, tokenizer)


def test_a_gguf_policy_with_lora_exports_a_merged_model_that_reloads_without_the_gguf(tokenizer, written, tmp_path):
    """The SFT stage's export: transformers marks a GGUF-loaded model as quantized ("not serializable") although
    its weights are dequantized floats; the policy drops the marker, so the merged LoRA model saves and reloads as
    a plain model with the same outputs."""
    from transformers import AutoModelForCausalLM

    from grpo_lightning.policies.lora import LoraSettings

    _, path = written[True]
    policy = CausalLM(gguf_file=str(path), lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    policy = policy.build(tokenizer)
    lora_b = [p for n, p in policy.model.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for p in lora_b:  # a non-zero adapter, so the merge changes the weights
            p.normal_(0, 0.1)
    merged = policy.model.merge_and_unload()
    merged.save_pretrained(str(tmp_path / "hf_model"))
    assert "quantization_config" not in (tmp_path / "hf_model" / "config.json").read_text()
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf_model")).eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        expected = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
