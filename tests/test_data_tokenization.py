"""data/tokenization.py: loading a tokenizer (an EOS token required, EOS as the pad, no remote code), truncation and
the pairs it empties, and ``data.chat_template``: prompts wrapped in the tokenizer's chat template (one user turn +
the generation prompt) before tokenising, for instruct models; tested with a tokenizer the test trains and gives a
template."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import SMALL_DATA, file_dm, pair_rows, write_jsonl

from grpo_lightning.data import PreferenceDataModule
from grpo_lightning.data.tokenization import load_tokenizer, tokenize_pairs, train_tokenizer

TEMPLATE = "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
ROWS = [
    {"prompt": f"Is {thing} good?", "chosen": " Yes", "rejected": " No", "group": group}
    for thing in ("tea", "rain", "snow", "sun", "wind", "mud", "fog", "ice", "salt", "rice")
    for group in ("north", "south")
]

SMALL = SMALL_DATA
_rows, _jsonl, _dm = pair_rows, write_jsonl, file_dm


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    texts = [r["prompt"] + r["chosen"] + r["rejected"] for r in ROWS] + ["<|user|> <|assistant|>"] * 5
    tokenizer = train_tokenizer(texts, vocab_size=300)
    plain = root / "plain"
    tokenizer.save_pretrained(str(plain))
    tokenizer.chat_template = TEMPLATE
    chat = root / "chat"
    tokenizer.save_pretrained(str(chat))
    return data, plain, chat


def _chat_dm(data, tokenizer, chat_template: bool) -> PreferenceDataModule:
    return PreferenceDataModule(
        path=str(data), tokenizer=str(tokenizer), chat_template=chat_template, max_length=64, max_prompt_length=48,
        split_fractions=(1.0, 0.0, 0.0),
    )  # fmt: skip


def test_prompts_are_one_user_turn_and_completions_follow_the_generation_prompt(files):
    data, _, chat = files
    dm = _chat_dm(data, chat, True)
    ds = dm.dataset("train")
    tok = dm.tokenizer
    assert len(ds) == len(ROWS)
    for prompt, chosen_ids, rejected_ids, plen in zip(
        ds["prompt"], ds["chosen_ids"], ds["rejected_ids"], ds["prompt_length"], strict=True
    ):
        question = prompt.removeprefix("<|user|>").removesuffix("\n<|assistant|>")
        assert prompt == f"<|user|>{question}\n<|assistant|>" and question in {r["prompt"] for r in ROWS}
        assert chosen_ids[:plen] == rejected_ids[:plen] == tok(prompt, add_special_tokens=False)["input_ids"]
        assert tok.decode(chosen_ids[plen:]).replace(tok.eos_token, "") == " Yes"
        assert tok.decode(rejected_ids[plen:]).replace(tok.eos_token, "") == " No"
    # Off (the default), the prompts are the rows' own.
    assert sorted(_chat_dm(data, chat, False).dataset("train")["prompt"]) == sorted(r["prompt"] for r in ROWS)


def test_a_tokenizer_without_a_chat_template_is_refused_naming_the_setting(files):
    data, plain, _ = files
    with pytest.raises(ValueError, match="data.chat_template is true but the tokenizer has no chat template"):
        _ = _chat_dm(data, plain, True).dataset("train")
    with pytest.raises(ValueError, match=r"data.chat_template needs a pretrained tokenizer"):
        PreferenceDataModule(chat_template=True)


def _save_tokenizer(tmp_path: Path, **special) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = list(special.values())
    tok.train_from_iterator(["hello world"] * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    path = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=tok, **special).save_pretrained(str(path))
    return str(path)


def test_tokenizer_without_eos_is_refused(tmp_path):
    path = _save_tokenizer(tmp_path, pad_token="<pad>")
    with pytest.raises(ValueError, match=r"has no EOS token"):
        load_tokenizer(path)


def test_tokenizer_without_pad_pads_with_eos(tmp_path, caplog):
    path = _save_tokenizer(tmp_path, eos_token="</s>")
    with caplog.at_level(logging.WARNING):
        tok = load_tokenizer(path)
    assert tok.pad_token_id == tok.eos_token_id is not None
    assert "no pad token; using EOS" in caplog.text


def test_trust_remote_code_is_off_by_default():
    import inspect

    from grpo_lightning.policies import CausalLM

    assert inspect.signature(load_tokenizer).parameters["trust_remote_code"].default is False
    assert CausalLM().init_args.get("trust_remote_code", False) is False


def test_long_prompt_keeps_its_end_and_is_noted(tmp_path, caplog):
    rows = _rows()
    rows[0]["prompt"] = "blah " * 200 + "the real question?"
    with caplog.at_level(logging.INFO):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))
    assert not dm.skipped
    row = next(r for s in ("train", "val", "test") for r in dm.dataset(s) if r["prompt"].startswith("blah"))
    assert row["prompt_length"] == SMALL["max_prompt_length"] and row["note"] == "prompt_truncated"
    assert dm.tokenizer.decode(row["chosen_ids"][: row["prompt_length"]]).endswith("the real question?")
    assert any("prompt_truncated" in m and "data prepared" in m for m in caplog.messages)


def test_completion_emptied_by_tokenization_or_truncation_is_skipped():
    class CharTokenizer:
        """One token per character, except that it drops '~' (as some normalisers drop characters)."""

        eos_token_id = 0

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[ord(ch) for ch in t if ch != "~"] for t in texts]}

    out = tokenize_pairs(
        {"prompt": ["abcdef", "abcdef", "ab"], "chosen": ["~~", "xyz1", "xy"], "rejected": ["no", "xyz2", "xz"]},
        tokenizer=CharTokenizer(),
        max_length=8,
        max_prompt_length=5,
    )
    assert out["drop"] == ["completion_empty_after_tokenization", "identical_after_truncation", ""]
    assert out["keep"] == [False, False, True]
    assert out["note"][0] == "prompt_truncated" and out["prompt_length"][0] == 5
