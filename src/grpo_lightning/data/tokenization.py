"""Tokeniser training (for the tiny default model), pair tokenisation and collation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from grpo_lightning.core.logprobs import IGNORE_INDEX
from grpo_lightning.training.checkpoints import read_checkpoint

log = logging.getLogger(__name__)

PAD, EOS = "<pad>", "<eos>"

# The columns of a tokenised split that make a batch (what the loaders select and the reference cache fingerprints).
PAIR_COLUMNS = ("chosen_ids", "rejected_ids", "prompt_length", "group_id", "index")
# The cached reference log-probs log π_ref(y_w|x), log π_ref(y_l|x) of each pair (``model.precompute_ref_logps``):
# columns of a tokenised split once the module's reference cache has handed them over, and the same keys in a batch.
CHOSEN_KEY, REJECTED_KEY = "ref_chosen_logps", "ref_rejected_logps"
REF_COLUMNS = (CHOSEN_KEY, REJECTED_KEY)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokeniser trained in code on ``texts`` (nothing is downloaded).

    Byte-level, so any UTF-8 text encodes without unknown tokens; ``<pad>`` and ``<eos>`` are
    special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False, gguf_file: str | None = None):
    """A pretrained tokeniser; a missing pad token falls back to EOS (the usual causal-LM choice)."""
    from transformers import AutoTokenizer

    # A hub id is "name" or "owner/name"; anything else is a local path, and when it is missing
    # the hub's complaint about the id's format would hide that.
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if looks_local and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(
            f"data.tokenizer: {name_or_path} does not exist (give a tokenizer directory or a hub id such as owner/name)"
        )
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load data.tokenizer={name_or_path!r} (not a local directory, so tried as a hub id): {err}\n"
            "Offline (HF_HUB_OFFLINE=1) only local directories and files already in the cache work."
        ) from err
    if tok.eos_token_id is None:
        raise ValueError(
            f"data.tokenizer={name_or_path!r} has no EOS token; completions must end with one. "
            "Use a tokenizer with an eos_token (set it in its tokenizer_config.json)."
        )
    if tok.pad_token_id is None:
        log.warning("tokenizer %s has no pad token; using EOS (%r) for padding", name_or_path, tok.eos_token)
        tok.pad_token = tok.eos_token
    return tok


# The special tokens a checkpoint's tokenizer entry can restore (single tokens, not lists).
_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def tokenizer_from_entry(entry: dict[str, Any]):
    """The tokenizer a checkpoint holds (``checkpoint["tokenizer"]``: the backend's JSON and the
    special tokens), as a fast tokenizer: the same token ids, EOS and padding as at training."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    special = {k: v for k, v in (entry.get("special_tokens") or {}).items() if k in _SPECIAL_TOKENS}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(entry["json"]), **special)


def tokenizer_from_checkpoint(path: str | Path):
    """The tokenizer stored in the checkpoint ``path`` (see :func:`tokenizer_from_entry`)."""
    entry = read_checkpoint(path).get("tokenizer")
    if not entry:
        raise ValueError(f"{path} holds no tokenizer; name the run's tokenizer with data.tokenizer")
    return tokenizer_from_entry(entry)


def chat_prompts(tokenizer, prompts: list[str]) -> list[str]:
    """Each prompt as one user turn in the tokenizer's chat template, ending with the assistant's generation
    prompt, as text (``apply_chat_template(..., tokenize=False, add_generation_prompt=True)``): the completions
    then follow where an instruct model's answer begins. Special tokens in the text (``<|im_start|>``) are
    tokenised as such by :func:`tokenize_pairs`."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "data.chat_template is true but the tokenizer has no chat template; use an instruct model's tokenizer "
            "or set data.chat_template false"
        )
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def tokenize_pairs(
    batch: dict[str, list],
    *,
    tokenizer,
    max_length: int,
    max_prompt_length: int,
) -> dict[str, list]:
    """``datasets.map(batched=True)`` function: prompt + completion + EOS, labels masked on the prompt.

    The prompt is tokenised alone and with each completion; when its tokens are a prefix of the
    joint encoding the joint ids are used (tokens that merge across the boundary are kept as the
    tokenizer produces them for real text), otherwise prompt and completion are encoded
    separately and concatenated (counted as ``prefix_mismatch``). A prompt longer than
    ``max_prompt_length`` keeps its last tokens; a completion is cut to fit ``max_length``.
    Output column ``keep`` is False for pairs to skip, and ``drop`` says why:
    ``completion_empty_after_tokenization`` (a completion without a token of its own) or
    ``identical_after_truncation`` (chosen and rejected cut to the same tokens).
    """
    eos = tokenizer.eos_token_id
    prompts = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
    out: dict[str, list] = {k: [] for k in ("prompt_length", "chosen_ids", "rejected_ids", "keep", "note")}
    for side in ("chosen", "rejected"):
        joint = tokenizer([p + c for p, c in zip(batch["prompt"], batch[side], strict=True)], add_special_tokens=False)[
            "input_ids"
        ]
        alone = tokenizer(batch[side], add_special_tokens=False)["input_ids"]
        completions = []
        for prompt_ids, joint_ids, alone_ids in zip(prompts, joint, alone, strict=True):
            if joint_ids[: len(prompt_ids)] == prompt_ids:
                completions.append((joint_ids[len(prompt_ids) :], False))
            else:
                completions.append((alone_ids, True))
        out[f"{side}_ids"] = completions
    rows = []
    for prompt_ids, (chosen, mis_c), (rejected, mis_r) in zip(
        prompts, out["chosen_ids"], out["rejected_ids"], strict=True
    ):
        note = "prefix_mismatch" if (mis_c or mis_r) else ""
        if len(prompt_ids) > max_prompt_length:
            prompt_ids = prompt_ids[-max_prompt_length:]
            note = note or "prompt_truncated"
        budget = max_length - len(prompt_ids)
        chosen_ids = (chosen + [eos])[:budget]
        rejected_ids = (rejected + [eos])[:budget]
        # A pair whose completion text encodes to nothing, or that truncation leaves without a
        # completion token, carries no answer; one that truncation leaves with identical
        # chosen and rejected tokens carries no preference.
        if not (len(chosen) > 0 and len(rejected) > 0 and budget >= 1):
            drop = "completion_empty_after_tokenization"
        elif chosen_ids == rejected_ids:
            drop = "identical_after_truncation"
        else:
            drop = ""
        rows.append((len(prompt_ids), prompt_ids + chosen_ids, prompt_ids + rejected_ids, drop, note))
    return {
        "prompt_length": [r[0] for r in rows],
        "chosen_ids": [r[1] for r in rows],
        "rejected_ids": [r[2] for r in rows],
        "keep": [not r[3] for r in rows],
        "drop": [r[3] for r in rows],
        "note": [r[4] for r in rows],
    }


def count_notes(notes: list[str]) -> Counter:
    return Counter(n for n in notes if n)


class PairCollator:
    """Pads a list of tokenised pairs into one batch, chosen rows first then rejected rows.

    Returns ``input_ids``, ``attention_mask``, ``labels`` of shape ``(2B, T)`` (labels are
    ``-100`` on the prompt and padding), ``prompt_length`` ``(B,)``, ``group`` ``(B,)`` and
    ``index`` ``(B,)`` (the pair's row in its split, for predictions); and, when the pairs carry the cached
    reference log-probs (columns ``ref_chosen_logps``/``ref_rejected_logps``, see
    :mod:`grpo_lightning.training.reference`), those as float32 ``(B,)`` under the same names.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs = [f["chosen_ids"] for f in features] + [f["rejected_ids"] for f in features]
        plens = [f["prompt_length"] for f in features] * 2
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (seq, plen) in enumerate(zip(seqs, plens, strict=True)):
            ids = torch.tensor(seq, dtype=torch.long)
            input_ids[i, : len(seq)] = ids
            attention_mask[i, : len(seq)] = 1
            labels[i, plen : len(seq)] = ids[plen:]
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "prompt_length": torch.tensor([f["prompt_length"] for f in features], dtype=torch.long),
            "group": torch.tensor([f["group_id"] for f in features], dtype=torch.long),
            "index": torch.tensor([f["index"] for f in features], dtype=torch.long),
        }
        for key in REF_COLUMNS:
            if features and key in features[0]:
                # float32 columns read back as Python floats: float32 again, bit for bit.
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.float32)
        return batch
