"""``data.chat_template``: prompts wrapped in the tokenizer's chat template (one user turn + the generation
prompt) before tokenising, for instruct models; tested with a tokenizer the test trains and gives a template."""

from __future__ import annotations

import json

import pytest

from grpo_lightning.data import PreferenceDataModule
from grpo_lightning.data.tokenization import train_tokenizer

TEMPLATE = "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
ROWS = [
    {"prompt": f"Is {thing} good?", "chosen": " Yes", "rejected": " No", "group": group}
    for thing in ("tea", "rain", "snow", "sun", "wind", "mud", "fog", "ice", "salt", "rice")
    for group in ("north", "south")
]


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


def _dm(data, tokenizer, chat_template: bool) -> PreferenceDataModule:
    return PreferenceDataModule(
        path=str(data), tokenizer=str(tokenizer), chat_template=chat_template, max_length=64, max_prompt_length=48,
        split_fractions=(1.0, 0.0, 0.0),
    )  # fmt: skip


def test_prompts_are_one_user_turn_and_completions_follow_the_generation_prompt(files):
    data, _, chat = files
    dm = _dm(data, chat, True)
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
    assert sorted(_dm(data, chat, False).dataset("train")["prompt"]) == sorted(r["prompt"] for r in ROWS)


def test_a_tokenizer_without_a_chat_template_is_refused_naming_the_setting(files):
    data, plain, _ = files
    with pytest.raises(ValueError, match="data.chat_template is true but the tokenizer has no chat template"):
        _ = _dm(data, plain, True).dataset("train")
    with pytest.raises(ValueError, match=r"data.chat_template needs a pretrained tokenizer"):
        PreferenceDataModule(chat_template=True)
