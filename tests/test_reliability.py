"""The catalogue of bad input (docs/reliability.md): each kind is refused with a message naming
file, row and field, or skipped and counted per reason; numerical faults; safe loading."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch

from grpo_lightning.config import LossConfig, WeightingConfig
from grpo_lightning.core.weighting import exponentiated_gradient_step
from grpo_lightning.data import DataError, PreferenceDataModule
from grpo_lightning.data.tokenization import load_tokenizer, tokenize_pairs

SMALL = {"max_length": 48, "max_prompt_length": 40, "batch_size": 4}


def _rows(n: int = 24, groups: tuple = ("A", "B")) -> list[dict]:
    return [
        {
            "prompt": f"question {i}?",
            "chosen": f"good answer {i}",
            "rejected": f"bad answer {i}",
            "group": groups[i % 2],
        }
        for i in range(n)
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _dm(path, **kwargs) -> PreferenceDataModule:
    dm = PreferenceDataModule(path=str(path), **{**SMALL, **kwargs})
    dm.setup("fit")
    return dm


def _fit(module, dm, callbacks=(), ckpt_path=None, **kwargs):
    L.seed_everything(0)
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
        callbacks=list(callbacks),
        **kwargs,
    )
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return trainer


# ---------------------------------------------------------------- refused at start-up


def test_missing_column_is_refused(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "group"} for r in _rows()]
    with pytest.raises(DataError, match=r"missing column\(s\) \['group'\].*--data.columns"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))


def test_column_named_in_data_columns_must_exist(tmp_path):
    with pytest.raises(DataError, match=r"\['who'\] named in data.columns not found"):
        _dm(_jsonl(tmp_path / "d.jsonl", _rows()), columns={"group": "who"})


def test_wrong_value_type_names_file_row_and_field(tmp_path):
    rows = _rows()
    rows[6]["chosen"] = 42
    with pytest.raises(DataError, match=r"d\.jsonl, row 7, field 'chosen': expected text, got int"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))
    rows = _rows()
    rows[2]["group"] = 1.5
    with pytest.raises(DataError, match=r"row 3, field 'group': a group label must be a string or an integer"):
        _dm(_jsonl(tmp_path / "e.jsonl", rows))


def test_wrong_column_type_in_parquet_is_refused(tmp_path):
    import datasets

    rows = _rows()
    for i, r in enumerate(rows):
        r["prompt"] = i
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    with pytest.raises(DataError, match=r"column 'prompt' must hold text"):
        _dm(tmp_path / "d.parquet")


def test_renamed_columns_are_checked_row_by_row(tmp_path):
    rows = [{"q": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "who": r["group"]} for r in _rows()]
    rows[4]["bad"] = ["a", "list"]
    cols = {"prompt": "q", "chosen": "good", "rejected": "bad", "group": "who"}
    with pytest.raises(DataError, match=r"row 5, field 'bad': expected text, got list"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows), columns=cols)
    rows[4]["bad"] = "fine"
    assert _dm(_jsonl(tmp_path / "d.jsonl", rows), columns=cols).group_names == ["A", "B"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        (
            "d.jsonl",
            b'{"prompt": "a", "chosen": "b", "rejected": "c", "group": "A"}\n{"prompt": "a",\n',
            r"row 2: not valid JSON",
        ),
        ("d.jsonl", b'["not", "an", "object"]\n', r"row 1: expected a JSON object"),
        ("d.json", b'[{"prompt": "a", "chosen": "b"', r"d\.json, line 1: not valid JSON"),
        (
            "d.csv",
            b"prompt,chosen,rejected,group\na,b,c,A\na,b,c\n",
            r"d\.csv, row 2 \(line 3\): 3 fields, the header has 4",
        ),
        (
            "d.csv",
            b'prompt,chosen,rejected,group\na,b,c,A\n"a,b,c,A\n',
            r"d\.csv, line \d+: not valid CSV: unexpected end",
        ),
        ("d.csv", b'prompt,chosen,rejected,group\n"a"x,b,c,A\n', r"d\.csv, line 2: not valid CSV"),
        ("d.parquet", b"PAR1 this is not parquet", r"d\.parquet: could not read as parquet"),
        ("d.jsonl", b"", r"d\.jsonl: no data rows"),
        ("d.csv", b"prompt,chosen,rejected,group\n", r"d\.csv: no data rows"),
    ],
)
def test_unreadable_file_names_file_and_row(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=match):
        _dm(tmp_path / name)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_non_utf8_text_names_file_row_and_field(tmp_path, suffix):
    if suffix == "jsonl":
        lines = [json.dumps(r).encode() for r in _rows(6)]
        lines[3] = lines[3].replace(b"bad answer 3", b"bad answer \xff3")
        content = b"\n".join(lines) + b"\n"
    else:
        content = b"prompt,chosen,rejected,group\n" + b"".join(
            f"{r['prompt']},{r['chosen']},{r['rejected']},{r['group']}\n".encode() for r in _rows(6)
        )
        content = content.replace(b"bad answer 3", b"bad answer \xe93")  # latin-1 é
    (tmp_path / f"d.{suffix}").write_bytes(content)
    with pytest.raises(DataError, match=rf"d\.{suffix}, row 4.*field 'rejected': byte 0x(ff|e9) is not valid UTF-8"):
        _dm(tmp_path / f"d.{suffix}")


def test_lone_surrogate_escape_is_refused(tmp_path):
    rows = _rows(6)
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows[:2])
        + '{"prompt": "x\\ud800", "chosen": "a", "rejected": "b", "group": "A"}\n'
    )
    with pytest.raises(DataError, match=r"row 3, field 'prompt': lone surrogate U\+D800"):
        _dm(tmp_path / "d.jsonl")


def test_error_names_the_row_of_the_right_file_in_a_directory(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _rows(10))
    rows = _rows(10)
    rows[8]["prompt"] = {"nested": 1}
    _jsonl(tmp_path / "b.jsonl", rows)
    with pytest.raises(DataError, match=r"b\.jsonl, row 9, field 'prompt'"):
        _dm(tmp_path)


def test_configured_group_absent_from_data_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"data.groups: \['C'\] not found.*groups there: \['A', 'B'\]"):
        _dm(_jsonl(tmp_path / "d.jsonl", _rows()), groups=["A", "C"])


def test_listed_group_whose_rows_are_all_skipped_is_refused(tmp_path):
    rows = _rows() + [{"prompt": "lonely", "chosen": "same", "rejected": "same", "group": "C"}]
    dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))  # C is not a group at all: its only row is skipped
    assert dm.group_names == ["A", "B"] and dm.skipped == {"chosen_equals_rejected": 1}
    with pytest.raises(DataError, match=r"data.groups: \['C'\] not found"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows), groups=["A", "B", "C"])


def test_group_whose_training_rows_all_vanish_is_refused(tmp_path, monkeypatch):
    """A group whose every training pair is skipped at tokenisation has N_g = 0: refused."""
    same = "one two three four five six seven eight nine ten "
    rows = _rows() + [{"prompt": "p", "chosen": same + "X", "rejected": same + "Y", "group": "C"}]
    dm = PreferenceDataModule(path=str(_jsonl(tmp_path / "d.jsonl", rows)), max_length=8, max_prompt_length=7)
    with pytest.raises(DataError, match=r"group\(s\) \['C'\] have no training pairs"):
        dm.setup("fit")
    assert dm.skipped["identical_after_truncation"] >= 1


def test_hub_id_offline_suggests_data_path():
    dm = PreferenceDataModule(hub_id="no-such-user/no-such-dataset", **SMALL)
    with pytest.raises(DataError, match=r"could not load 'no-such-user/no-such-dataset'.*--data.path"):
        dm.setup("fit")


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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"eval_batch_size": 0}, "data.eval_batch_size"),
        ({"accumulate_grad_batches": 0}, "accumulate_grad_batches"),
        ({"max_prompt_length": 48}, "data.max_prompt_length"),
        ({"max_prompt_length": 0}, "data.max_prompt_length"),
        ({"split_fractions": (0.5, 0.5, 0.5)}, "data.split_fractions"),
        ({"split_fractions": (1.2, -0.1, -0.1)}, "data.split_fractions"),
        ({"split_fractions": (float("nan"), 0.5, 0.5)}, "data.split_fractions"),
        ({"split_fractions": (0.0, 0.5, 0.5)}, "training fraction"),
        ({"predict_split": "dev"}, "data.predict_split"),
        ({"groups": ["A", "A"]}, "data.groups"),
        ({"groups": []}, "data.groups"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"tokenizer_vocab_size": 100}, "data.tokenizer_vocab_size"),
        ({"path": "x.jsonl", "hub_id": "a/b"}, "not both"),
    ],
)
def test_out_of_range_data_settings_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PreferenceDataModule(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LossConfig(beta=float("inf")), "beta"),
        (lambda: LossConfig(beta=float("nan")), "beta"),
        (lambda: LossConfig(name="dpo", label_smoothing=0.5), "label_smoothing"),
        (lambda: WeightingConfig(chi=-0.1), "chi"),
        (lambda: WeightingConfig(chi=float("nan")), "chi"),
        (lambda: WeightingConfig(step_size=float("inf")), "step_size"),
        (lambda: WeightingConfig(step_size=float("nan")), "step_size"),
        (lambda: WeightingConfig(estimator="median"), "estimator"),
    ],
)
def test_out_of_range_model_settings_name_the_setting(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- skipped and counted


def test_bad_rows_are_skipped_counted_per_reason_and_logged_with_their_rows(tmp_path, caplog):
    rows = _rows(30)
    rows[1]["prompt"] = "   "  # row 2
    rows[2]["chosen"] = ""  # row 3
    rows[3]["rejected"] = None  # row 4
    rows[4]["rejected"] = rows[4]["chosen"]  # row 5
    rows[5]["group"] = None  # row 6
    del rows[6]["group"]  # row 7: a missing key is a null value
    rows[7] = dict(rows[8])  # rows 8 and 9 identical: row 9 is the duplicate
    rows[10]["group"] = "Z"  # row 11: not in data.groups
    with caplog.at_level(logging.INFO):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows), groups=["A", "B"])
    assert dm.rows_in == 30
    assert dm.skipped == {
        "empty_prompt": 1,
        "empty_chosen": 1,
        "empty_rejected": 1,
        "chosen_equals_rejected": 1,
        "null_group": 2,
        "duplicate_pair": 1,
        "group_not_in_data.groups": 1,
    }
    kept = sum(len(dm.dataset(s)) for s in ("train", "val", "test"))
    assert kept + sum(dm.skipped.values()) == dm.rows_in
    for reason, ref in [
        ("empty_prompt", "row 2"),
        ("empty_chosen", "row 3"),
        ("empty_rejected", "row 4"),
        ("chosen_equals_rejected", "row 5"),
        ("null_group", "d.jsonl, row 6; d.jsonl, row 7"),
        ("duplicate_pair", "row 9"),
        ("group_not_in_data.groups", "row 11"),
    ]:
        assert any(reason in m and ref in m for m in caplog.messages), reason
    summary = [m for m in caplog.messages if "data prepared" in m]
    assert len(summary) == 1
    assert f"30 rows in, {kept} kept" in summary[0] and "8 skipped" in summary[0] and "'null_group': 2" in summary[0]


def test_integer_group_labels_become_names(tmp_path):
    rows = _rows()
    for i, r in enumerate(rows):
        r["group"] = i % 2
    assert _dm(_jsonl(tmp_path / "d.jsonl", rows)).group_names == ["0", "1"]


def test_csv_empty_fields_are_skipped(tmp_path):
    lines = ["prompt,chosen,rejected,group"] + [f"q{i},good {i},bad {i},{'AB'[i % 2]}" for i in range(20)]
    lines[3] = "q2,,bad 2,A"
    lines[5] = "q4,good 4,bad 4,"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    dm = _dm(tmp_path / "d.csv")
    assert dm.skipped == {"empty_chosen": 1, "null_group": 1} and dm.rows_in == 20


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


def test_single_group_is_allowed_with_a_warning(tmp_path, caplog, make_module):
    with caplog.at_level(logging.WARNING):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", _rows(groups=("A", "A"))))
    assert dm.group_names == ["A"]
    assert any("only one group" in m and "reduce to the plain" in m for m in caplog.messages)
    module = make_module(dm, weighting={"name": "robust", "step_size": 1.0})
    _fit(module, dm, max_steps=2)
    assert torch.equal(module.group_weights(), torch.ones(1, dtype=torch.float64))


def test_group_smaller_than_a_step_warns(tmp_path, caplog):
    rows = _rows() + [{"prompt": f"c{i}", "chosen": "x", "rejected": "y", "group": "C"} for i in range(3)]
    with caplog.at_level(logging.WARNING):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows), batch_size=4, accumulate_grad_batches=2)
    assert dm.train_group_counts[2] < 8
    assert any("fewer training pairs than one optimizer step (8 pairs)" in m and "'C'" in m for m in caplog.messages)


def test_all_rows_unusable_is_refused(tmp_path):
    rows = [{"prompt": "", "chosen": "a", "rejected": "b", "group": "A"}] * 5
    with pytest.raises(DataError, match="no usable rows"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))


# ---------------------------------------------------------------- checkpoints


def test_resuming_with_other_groups_is_refused_naming_the_difference(tmp_path, tiny_dm_factory, make_module):
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting={"name": "robust"})
    trainer = _fit(module, dm, max_steps=1)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    dm2 = tiny_dm_factory(batch_size=16, groups=dm.group_names[:3])
    other = make_module(dm2, weighting={"name": "robust"})
    with pytest.raises(ValueError, match=r"only in the checkpoint: \['Dunmore', 'Eastvale'\]; only in this run: \[\]"):
        _fit(other, dm2, max_steps=2, ckpt_path=ckpt)


def test_checkpoint_loads_with_weights_only(tmp_path, tiny_dm_factory, make_module):
    """Hyperparameters and the extra checkpoint entries are plain data: ``torch.load`` with
    ``weights_only=True`` (what Lightning 2.6 uses for local ``ckpt_path`` under torch >= 2.6)."""
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting={"name": "robust"})
    trainer = _fit(module, dm, max_steps=1)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    ckpt = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert ckpt["group_names"] == dm.group_names and "log_alpha" in ckpt["state_dict"]
    assert isinstance(ckpt["hyper_parameters"]["policy"], dict)
    restored = type(module).load_from_checkpoint(tmp_path / "a.ckpt", tokenizer=dm.tokenizer, weights_only=True)
    assert torch.equal(restored.log_alpha, module.log_alpha)
    _fit(make_module(dm, weighting={"name": "robust"}), dm, max_steps=2, ckpt_path=tmp_path / "a.ckpt")


def test_trust_remote_code_is_off_by_default():
    import inspect

    from grpo_lightning.policies import CausalLM

    assert inspect.signature(load_tokenizer).parameters["trust_remote_code"].default is False
    assert CausalLM().init_args.get("trust_remote_code", False) is False


# ---------------------------------------------------------------- numerical faults


@pytest.mark.parametrize("step_size", [1e-300, 1e-12, 1.0, 1e6])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 5e3, 1e8])
def test_alpha_step_stays_on_the_simplex(step_size, scale):
    """IPO-scale (and larger) losses with tiny to huge step sizes: log α stays finite, α on the
    simplex, and the worst group never loses weight relative to another."""
    la0 = torch.log(torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64))
    losses = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64) * scale
    la = la0
    for _ in range(50):
        la = exponentiated_gradient_step(la, losses, step_size)
        assert torch.isfinite(la).all() and (la <= 0).all()
        torch.testing.assert_close(la.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert la[1] - la[0] >= la0[1] - la0[0] - 1e-12 and la[1] - la[2] >= la0[1] - la0[2] - 1e-12


class _PoisonAt(L.Callback):
    """Makes the policy's losses NaN on the batch that starts optimizer step ``step``, and
    records the state around it."""

    def __init__(self, step: int, ckpt: Path | None = None) -> None:
        self.step, self.ckpt, self.before, self.after, self.ckpt_bytes = step, ckpt, None, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        poisoned = trainer.global_step == self.step and self.before is None
        if poisoned:
            self.before = (module.log_alpha.clone(), module.group_weights().clone(), _params(module))
            self.ckpt_bytes = self.ckpt.read_bytes() if self.ckpt else None
        original = type(module)._pair_outputs

        def pair_outputs(mod, b, ref):
            out = original(mod, b, ref)
            return out._replace(losses=out.losses * float("nan")) if poisoned else out

        module._pair_outputs = functools.partial(pair_outputs, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.before is not None and self.after is None:
            self.after = (module.log_alpha.clone(), module.group_weights().clone(), _params(module))


def _params(module):
    return {k: v.detach().clone() for k, v in module.policy.model.named_parameters()}


@pytest.mark.parametrize("weighting", ["robust", "uniform"])
def test_nonfinite_loss_stops_and_leaves_the_last_checkpoint_untouched(
    tmp_path, tiny_dm_factory, make_module, weighting
):
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, weighting={"name": weighting, "step_size": 0.1})
    last = tmp_path / "last.ckpt"
    poison = _PoisonAt(3, last)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_top_k=0)
    with pytest.raises(FloatingPointError, match=r"non-finite .* at optimizer step 3, batch 3") as err:
        _fit(module, dm, callbacks=[checkpoint, poison], max_steps=6)
    assert ("group loss of [" if weighting == "robust" else "(groups [") in str(err.value)
    assert poison.ckpt_bytes is not None and last.read_bytes() == poison.ckpt_bytes
    assert torch.load(last, weights_only=True)["global_step"] == 3
    alpha, _, params = poison.before
    assert torch.equal(module.log_alpha, alpha)
    assert all(torch.equal(v, params[k]) for k, v in _params(module).items())


def test_nonfinite_loss_skip_leaves_alpha_and_weights_and_continues(tiny_dm_factory, make_module, caplog):
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, weighting={"name": "robust", "step_size": 0.1}, on_nonfinite="skip")
    poison = _PoisonAt(2)
    with caplog.at_level(logging.WARNING):
        trainer = _fit(module, dm, callbacks=[poison], max_steps=5)
    alpha, weights, params = poison.before
    alpha_after, weights_after, params_after = poison.after
    assert torch.equal(alpha, alpha_after) and torch.equal(weights, weights_after)
    assert all(torch.equal(v, params_after[k]) for k, v in params.items())
    assert any("at optimizer step 2, batch 2" in m and "skipping this optimizer step" in m for m in caplog.messages)
    assert trainer.global_step == 5 and not torch.equal(module.log_alpha, alpha)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_empty_splits_are_allowed_and_a_zero_fraction_stays_empty(tmp_path):
    """Found by the fuzz test: one row (val and test empty) used to crash in tokenisation, and a
    split with fraction 0 used to get a prompt per group."""
    dm = _dm(_jsonl(tmp_path / "one.jsonl", _rows(1)))
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [1, 0, 0]
    assert list(dm.val_dataloader()) == []
    dm = _dm(_jsonl(tmp_path / "d.jsonl", _rows(20)), split_fractions=(0.9, 0.1, 0.0))
    assert len(dm.dataset("test")) == 0 and len(dm.dataset("val")) == 2
