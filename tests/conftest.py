"""Shared fixtures and helpers. Tests never touch the network: the hub is forced offline."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import pytest  # noqa: E402

if TYPE_CHECKING:
    from grpo_lightning.data import PreferenceDataModule

datasets.disable_progress_bars()

# The generated pool split by fractions (no separate evaluation pairs): small and fast.
TINY_DATA = {
    "generated": {"num_pairs": 100, "val_questions": 0, "test_questions": 0, "seed": 0},
    "max_length": 64,
    "max_prompt_length": 56,
}


@pytest.fixture(scope="session")
def tiny_dm_factory():
    from grpo_lightning.data import GeneratedOpinions, PreferenceDataModule

    def make(**overrides):
        kwargs = {**TINY_DATA, **overrides}
        kwargs["generated"] = GeneratedOpinions(**kwargs["generated"])
        return PreferenceDataModule(**kwargs)

    return make


@pytest.fixture()
def make_module():
    from grpo_lightning.core.losses import IPO
    from grpo_lightning.core.weighting import UniformWeighting
    from grpo_lightning.policies import CausalLM, TinyLlama
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    def make(dm, *, loss=None, weighting=None, **kwargs):
        return GroupRobustPreferenceModule(
            policy=CausalLM(
                tiny=TinyLlama(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
            ),
            loss=loss or IPO(beta=0.1),
            weighting=weighting or UniformWeighting(),
            group_names=dm.group_names,
            group_counts=dm.train_group_counts,
            tokenizer=dm.tokenizer,
            **kwargs,
        )

    return make


PAPER_COUNTRIES = ("Nigeria", "Egypt", "India (Current national sample)", "China", "Japan")


@pytest.fixture(scope="session")
def goqa_csv(tmp_path_factory):
    """A small file in Global Opinion QA's own CSV schema: 40 questions, the paper's five
    countries plus one other, seeded random answer shares."""
    import csv
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("goqa") / "goqa.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "selections", "options", "source"])
        for q in range(40):
            n = rng.choice([2, 3, 4])
            options = [f"Option {k} of question {q}" for k in range(n)]
            shares = {}
            for country in (*PAPER_COUNTRIES, "Canada"):
                raw = [rng.random() for _ in range(n)]
                shares[country] = [round(x / sum(raw), 3) for x in raw]
            body = ", ".join(f"'{c}': {v}" for c, v in shares.items())
            writer.writerow(
                [
                    f"Question {q}: how do you feel about topic {q % 7}?",
                    f"defaultdict(<class 'list'>, {{{body}}})",
                    repr(options),
                    "",
                ]
            )
    return path


def composed_yaml(path) -> dict:
    """A config file's raw YAML merged over its ``__base__`` files key by key (later files win), without the CLI's
    class_path rules: for tests that read a config's own keys (a policy's file, a data class) without parsing it."""
    import yaml

    from grpo_lightning.cli.config_files import BASE_KEY, composed_files

    def merge(into: dict, new: dict) -> dict:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
        return into

    out: dict = {}
    for file in composed_files(path):
        loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        loaded.pop(BASE_KEY, None)
        merge(out, loaded)
    return out


#: CLI flags that shrink the default config's data: 100 generated training pairs, 2 val and 2 test
#: questions (6 pairs each per group), short sequences.
TINY_DATA_FLAGS = [
    "--data.init_args.generated.num_pairs",
    "100",
    "--data.init_args.generated.val_questions",
    "2",
    "--data.init_args.generated.test_questions",
    "2",
    "--data.init_args.max_length",
    "64",
    "--data.init_args.max_prompt_length",
    "56",
]

#: CLI flags that shrink the default config's model.
TINY_MODEL_FLAGS = [
    "--model.policy.init_args.tiny.hidden_size",
    "32",
    "--model.policy.init_args.tiny.num_hidden_layers",
    "1",
    "--model.policy.init_args.tiny.intermediate_size",
    "64",
]


def fit_quietly(module, datamodule, ckpt_path=None, callbacks=(), **trainer_kwargs):
    """``Trainer.fit`` on CPU without logger, progress bar or validation; checkpoints only from a ``ModelCheckpoint``
    among ``callbacks``."""
    import lightning as L

    L.seed_everything(0)
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
        callbacks=list(callbacks),
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule, ckpt_path=ckpt_path)
    return trainer


# ---------------------------------------------------------------- small local data files

#: Data module settings for the small files the tests write.
SMALL_DATA = {"max_length": 48, "max_prompt_length": 40, "batch_size": 4}


def pair_rows(n: int = 24, groups: tuple = ("A", "B")) -> list[dict]:
    """``n`` pairs with prompts of their own, alternating between two groups."""
    return [
        {
            "prompt": f"question {i}?",
            "chosen": f"good answer {i}",
            "rejected": f"bad answer {i}",
            "group": groups[i % 2],
        }
        for i in range(n)
    ]


def group_pairs(group: str, n: int, prefix: str = "") -> list[dict]:
    """``n`` pairs of one group, each with a prompt of its own."""
    return [
        {"prompt": f"{prefix}{group} question {i}?", "chosen": f"yes {i}", "rejected": f"no {i}", "group": group}
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def file_dm(path, **kwargs) -> PreferenceDataModule:
    """A ``PreferenceDataModule`` of a local file (or directory) with ``SMALL_DATA`` and ``kwargs``, set up for fit."""
    from grpo_lightning.data import PreferenceDataModule

    dm = PreferenceDataModule(path=str(path), **{**SMALL_DATA, **kwargs})
    dm.setup("fit")
    return dm


# ---------------------------------------------------------------- the `grpo` command in-process

ROOT = Path(__file__).resolve().parents[1]

#: The default config shrunk to one training step without logger or validation.
TINY_CLI = [
    "--config",
    str(ROOT / "configs/default.yaml"),
    *TINY_DATA_FLAGS,
    "--trainer.logger",
    "false",
    "--trainer.max_steps",
    "1",
    "--trainer.limit_val_batches",
    "0",
    "--trainer.enable_progress_bar",
    "false",
]


def grpo_error(monkeypatch, capsys, tmp_path, *args: str) -> str:
    """Runs the ``grpo`` console entry point in-process; returns stderr after the expected exit 2."""
    from grpo_lightning.cli.app import entry_point

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRPO_TRACEBACK", raising=False)
    monkeypatch.setattr("sys.argv", ["grpo", "fit", *TINY_CLI, *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        entry_point()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == "(set GRPO_TRACEBACK=1 for the traceback)"
    return err.splitlines()[-2]


# ---------------------------------------------------------------- a tiny policy without data

#: The two-layer tiny Llama of the policy tests: ``TinyLlama(**TINY_LLAMA)``.
TINY_LLAMA = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


class StubTokenizer:
    """Just enough of a tokenizer for ``CausalLM.build`` (vocabulary size, pad, eos)."""

    pad_token_id, eos_token_id = 0, 1

    def __len__(self) -> int:
        return 50


def build_tiny_policy(**kwargs):
    """``CausalLM(tiny=TinyLlama(**TINY_LLAMA), **kwargs)`` built for ``StubTokenizer``, seeded."""
    import torch

    from grpo_lightning.policies import CausalLM, TinyLlama

    torch.manual_seed(0)
    return CausalLM(tiny=TinyLlama(**TINY_LLAMA), **kwargs).build(StubTokenizer())


def ragged_pair_batch():
    """Four pairs: prompts of 3..9 tokens, completions of 1..4 tokens, chosen and rejected of
    different lengths (right padding in the collator)."""
    import torch

    from grpo_lightning.data.tokenization import PairCollator

    g = torch.Generator().manual_seed(0)
    feats = []
    for i, (p, c, r) in enumerate([(9, 1, 3), (3, 4, 1), (6, 2, 2), (5, 3, 4)]):
        ids = torch.randint(2, 50, (p + c + r,), generator=g).tolist()
        feats.append(
            {
                "chosen_ids": ids[:p] + ids[p : p + c],
                "rejected_ids": ids[:p] + ids[p + c :],
                "prompt_length": p,
                "group_id": i % 2,
                "index": i,
            }
        )
    return PairCollator(pad_token_id=0)(feats)


# ---------------------------------------------------------------- small files and tensors


def _write(path: Path, text: str) -> str:
    """Writes ``text`` to ``path`` (its folders made); returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def t(*values):
    """A float64 tensor of ``values``."""
    import torch

    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- Global Opinion QA rows in its own schema
# (test_data_sources_goqa.py: building pairs; test_data_sources_goqa_loading.py: reading the table)

GROUPS = ("Japan", "Nigeria", "Egypt")


def sel(body: str) -> str:
    """A selections string in the dataset's own defaultdict form."""
    return f"defaultdict(<class 'list'>, {{{body}}})"


TEA = "['Yes', 'No', \"Don't know\"]"
# question, selections, options -- with the skip reason(s) each malformed row should produce.
ROWS: list[tuple[str, str, str]] = [
    # 0: usable for Japan (B wins), Nigeria (A wins) and France (A/B tie).
    (
        "Do you like tea?",
        sel("'Japan': [0.2, 0.7, 0.1], 'Nigeria': [0.5, 0.3, 0.2], 'France': [0.4, 0.4, 0.2]"),
        TEA,
    ),
    ("", sel("'Japan': [0.2, 0.8]"), "['Yes', 'No']"),  # 1: empty_question
    ("Q2?", sel("'Japan': []"), "[]"),  # 2: no_options
    ("Q3?", sel("'Japan': [0.2, 0.8]"), "Yes, No"),  # 3: unparsable_options
    ("Q4?", "garbage", "['Yes', 'No']"),  # 4: unparsable_selections
    # 5: Japan wrong_length, Nigeria all_zero, Egypt invalid_shares (negative); France is not configured
    (
        "Q5?",
        sel("'Japan': [0.5, 0.5], 'Nigeria': [0.0, 0.0, 0.0], 'Egypt': [-0.1, 0.6, 0.5], 'France': [1, 0, 0]"),
        TEA,
    ),
    # 6: ties -- Japan A/B (A wins), Egypt B/C (B wins)
    ("Q6?", sel("'Japan': [0.4, 0.4, 0.2], 'Egypt': [0.1, 0.45, 0.45]"), TEA),
    ("Q7?", sel("'France': [0.9, 0.1]"), "['Yes', 'No']"),  # 7: no configured country -- not a skip
    ("Q8?", "__import__('os').system('echo pwned')", "['Yes', 'No']"),  # 8: unparsable_selections
    # 9: options with nested quotes
    ("Q9?", sel("'Japan': [0.3, 0.7]"), '[\'He said "yes"\', "It\'s fine"]'),
    ("Q10?", sel("'Egypt': [nan, 0.5, 0.5]"), TEA),  # 10: invalid_shares (NaN)
    ("Q11?", sel("'Japan': [1.0]"), "['Only']"),  # 11: single_option
]
EXPECTED_SKIPS = {
    "empty_question": 1,
    "no_options": 1,
    "unparsable_options": 1,
    "unparsable_selections": 2,
    "wrong_length": 1,
    "all_zero": 1,
    "invalid_shares": 2,
    "single_option": 1,
}


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "selections", "options", "source"])
        writer.writerows([(*row, "") for row in rows])
    return path


@pytest.fixture()
def table(tmp_path: Path) -> datasets.Dataset:
    from grpo_lightning.data.sources.goqa_loading import load_goqa_table

    return load_goqa_table(str(write_csv(tmp_path / "goqa.csv", ROWS)))
