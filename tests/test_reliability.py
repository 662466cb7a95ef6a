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
from conftest import TINY_DATA_FLAGS

from grpo_lightning.core.losses import DPO, IPO
from grpo_lightning.core.weighting import ImportanceWeighting, RobustWeighting, UniformWeighting
from grpo_lightning.core.weighting_functions import exponentiated_gradient_step
from grpo_lightning.data import DataError, PreferenceDataModule
from grpo_lightning.data.splits import stratified_split
from grpo_lightning.data.tokenization import load_tokenizer, tokenize_pairs
from grpo_lightning.policies.lora import LoraSettings

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
        (lambda: IPO(beta=float("inf")), "beta"),
        (lambda: IPO(beta=float("nan")), "beta"),
        (lambda: DPO(label_smoothing=0.5), "label_smoothing"),
        (lambda: RobustWeighting(chi=-0.1), "chi"),
        (lambda: RobustWeighting(chi=float("nan")), "chi"),
        (lambda: RobustWeighting(step_size=float("inf")), "step_size"),
        (lambda: RobustWeighting(step_size=float("nan")), "step_size"),
        (lambda: RobustWeighting(estimator="median"), "estimator"),
        (lambda: ImportanceWeighting(weights=[1.0, float("nan")]), "weighting.weights"),
        (lambda: ImportanceWeighting(weights=[1.0, float("inf")]), "weighting.weights"),
        (lambda: DPO(label_smoothing=float("nan")), "label_smoothing"),
        (lambda: LoraSettings(alpha=float("nan")), "lora.alpha"),
    ],
)
def test_out_of_range_model_settings_name_the_setting(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_gradient_clip_val_is_refused(tiny_dm_factory, make_module, value):
    dm = tiny_dm_factory(batch_size=8)
    with pytest.raises(ValueError, match=rf"model.gradient_clip_val must be a finite number > 0, got {value}"):
        make_module(dm, gradient_clip_val=value)


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
    module = make_module(dm, weighting=RobustWeighting(step_size=1.0))
    _fit(module, dm, max_steps=2)
    assert torch.equal(module.group_weights(), torch.ones(1, dtype=torch.float64))


def test_group_smaller_than_a_step_warns(tmp_path, caplog):
    rows = _rows() + [{"prompt": f"c{i}", "chosen": "x", "rejected": "y", "group": "C"} for i in range(3)]
    with caplog.at_level(logging.WARNING):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows), batch_size=4, accumulate_grad_batches=2)
    counts = dm.train_group_counts
    assert counts[2] * 8 / sum(counts) < 1 <= min(counts[:2]) * 8 / sum(counts)
    warned = [m for m in caplog.messages if "expected less than once per optimizer step of 8 pairs" in m]
    assert len(warned) == 1 and "'C'" in warned[0] and "'A'" not in warned[0]


def test_a_small_group_seen_in_most_steps_does_not_warn(tiny_dm_factory, caplog):
    """The default task: Eastvale's 60 of 1,200 pairs, 3.2 per step of 64 on average, is in ~96 % of steps."""
    with caplog.at_level(logging.WARNING):
        dm = tiny_dm_factory(generated={"num_pairs": 1200, "val_questions": 1, "test_questions": 1}, batch_size=64)
    assert dm.train_group_counts[-1] == 60
    assert not any("per optimizer step" in m for m in caplog.messages)


def test_all_rows_unusable_is_refused(tmp_path):
    rows = [{"prompt": "", "chosen": "a", "rejected": "b", "group": "A"}] * 5
    with pytest.raises(DataError, match="no usable rows"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))


# ---------------------------------------------------------------- checkpoints


def test_resuming_with_other_groups_is_refused_naming_the_difference(tmp_path, tiny_dm_factory, make_module):
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting=RobustWeighting())
    trainer = _fit(module, dm, max_steps=1)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    dm2 = tiny_dm_factory(batch_size=16, groups=dm.group_names[:3])
    other = make_module(dm2, weighting=RobustWeighting())
    with pytest.raises(ValueError, match=r"only in the checkpoint: \['Dunmore', 'Eastvale'\]; only in this run: \[\]"):
        _fit(other, dm2, max_steps=2, ckpt_path=ckpt)


def test_checkpoint_loads_with_weights_only(tmp_path, tiny_dm_factory, make_module):
    """Hyperparameters and the extra checkpoint entries are plain data: ``torch.load`` with
    ``weights_only=True`` (what Lightning 2.6 uses for local ``ckpt_path`` under torch >= 2.6)."""
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting=RobustWeighting())
    trainer = _fit(module, dm, max_steps=1)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    ckpt = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert ckpt["group_names"] == dm.group_names and "log_alpha" in ckpt["state_dict"]
    assert isinstance(ckpt["hyper_parameters"]["policy"], dict)
    restored = type(module).load_from_checkpoint(tmp_path / "a.ckpt", tokenizer=dm.tokenizer, weights_only=True)
    assert torch.equal(restored.log_alpha, module.log_alpha)
    _fit(make_module(dm, weighting=RobustWeighting()), dm, max_steps=2, ckpt_path=tmp_path / "a.ckpt")


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
        original = type(module).pair_outputs

        def pair_outputs(mod, b, ref):
            out = original(mod, b, ref)
            return out._replace(losses=out.losses * float("nan")) if poisoned else out

        module.pair_outputs = functools.partial(pair_outputs, module)

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
    built = RobustWeighting(step_size=0.1) if weighting == "robust" else UniformWeighting()
    module = make_module(dm, weighting=built)
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
    module = make_module(dm, weighting=RobustWeighting(step_size=0.1), on_nonfinite="skip")
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
    assert len(dm.dataset("test")) == 0 and len(dm.dataset("val")) > 0


# ---------------------------------------------------------------- evaluation coverage and group labels


def _pairs(group: str, n: int, prefix: str = "") -> list[dict]:
    return [
        {"prompt": f"{prefix}{group} question {i}?", "chosen": f"yes {i}", "rejected": f"no {i}", "group": group}
        for i in range(n)
    ]


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.98, 0.01, 0.01), (0.6, 0.2, 0.2)])
def test_every_group_with_three_prompts_gets_a_val_and_a_test_pair(fractions):
    sizes = [3, 4, 5, 7, 12, 40]
    groups = [g for g, n in enumerate(sizes) for _ in range(n)]
    prompts = [f"p{i}" for i in range(len(groups))]
    for seed in range(5):
        train, val, test = stratified_split(groups, prompts, fractions, seed)
        for part in (train, val, test):
            assert {groups[i] for i in part} == set(range(len(sizes))), (seed, fractions)


def test_groups_without_eval_pairs_are_named_at_setup(tmp_path, caplog):
    """C (2 pairs) cannot be in every split; B (3 pairs) is in each; both facts are said."""
    rows = _pairs("A", 20) + _pairs("B", 3) + _pairs("C", 2)
    with caplog.at_level(logging.INFO):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))
    names = dm.group_names
    for split in ("val", "test"):
        present = {names[g] for g in dm.dataset(split)["group_id"]}
        assert present == {"A", "B"}, split
        assert any(
            f"group(s) ['C'] have no {split} pairs" in m and f"{split}/worst_group_loss" in m for m in caplog.messages
        )
    summary = next(m for m in caplog.messages if "data prepared" in m)
    assert "val pairs cover 2/3 groups (none of ['C'])" in summary
    assert "test pairs cover 2/3 groups (none of ['C'])" in summary


def test_worst_group_metric_says_which_groups_it_covers(tmp_path, caplog, make_module):
    rows = _pairs("A", 20) + _pairs("B", 3) + _pairs("C", 2)
    dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))
    module = make_module(dm)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with caplog.at_level(logging.WARNING):
        trainer.validate(module, dm, verbose=False)
        trainer.validate(module, dm, verbose=False)
    assert trainer.logged_metrics["val/groups_covered"] == 2
    assert "val/loss/C" not in trainer.logged_metrics
    warned = [m for m in caplog.messages if "val/worst_group_loss" in m and "cover 2 of 3 groups" in m]
    assert len(warned) == 1 and "no val pairs of ['C']" in warned[0]


def test_group_labels_are_stripped_and_case_variants_reported_or_merged(tmp_path, caplog):
    rows = _pairs("north", 8) + _pairs("south", 8)
    for r in rows[:3]:
        r["group"] = "north "  # the same group with a trailing space
    rows[3]["group"] = " north\t"
    rows += _pairs("NORTH", 2, prefix="x")  # the same group in capitals
    rows.append({**rows[4], "group": " north"})  # a duplicate once stripped
    path = _jsonl(tmp_path / "d.jsonl", rows)
    with caplog.at_level(logging.INFO):
        dm = _dm(path)
    assert dm.group_names == ["NORTH", "north", "south"]
    assert dm.skipped == {"duplicate_pair": 1}
    assert any("stripped surrounding whitespace from 5 group labels" in m for m in caplog.messages)
    assert any(
        "differ only in case are kept as separate groups: [['NORTH', 'north']]" in m and "merge_group_case" in m
        for m in caplog.messages
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        merged = _dm(path, merge_group_case=True)
    assert merged.group_names == ["north", "south"] and merged.train_group_counts[0] > dm.train_group_counts[1]
    assert any("merged group labels that differ only in case" in m for m in caplog.messages)
    assert _dm(path, merge_group_case=True, groups=["NORTH", "south"]).group_names == ["NORTH", "south"]


def test_unused_columns_with_mixed_types_do_not_block_a_directory(tmp_path):
    import datasets

    a, b = _rows(12), _rows(12)
    for i, r in enumerate(a):
        r["id"], r["meta"] = i, {"k": 1}
    for i, r in enumerate(b):
        r["id"], r["prompt"] = f"b{i}", f"other {r['prompt']}"
    (tmp_path / "jsonl").mkdir()
    _jsonl(tmp_path / "jsonl" / "a.jsonl", a)
    _jsonl(tmp_path / "jsonl" / "b.jsonl", b)
    dm = _dm(tmp_path / "jsonl")
    assert dm.rows_in == 24 and "id" not in dm.dataset("train").column_names
    (tmp_path / "pq").mkdir()
    a = [{**r, "group": i % 2, "meta": None} for i, r in enumerate(a)]  # integer groups in one file only
    datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "meta"} for r in a]).to_parquet(
        str(tmp_path / "pq" / "a.parquet")
    )
    datasets.Dataset.from_list([{**r, "group": str(r["group"] == "B")} for r in b]).to_parquet(
        str(tmp_path / "pq" / "b.parquet")
    )
    assert _dm(tmp_path / "pq").group_names == ["0", "1", "False", "True"]


def test_missing_column_lists_every_column_of_the_file(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _rows(6))
    _jsonl(tmp_path / "b.jsonl", [{**{k: v for k, v in r.items() if k != "group"}, "country": "X"} for r in _rows(6)])
    with pytest.raises(DataError, match=r"b\.jsonl: missing column\(s\) \['group'\]; found \[.*'country'\]"):
        _dm(tmp_path)


# ---------------------------------------------------------------- readable errors from the `grpo` command

ROOT = Path(__file__).resolve().parents[1]
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


def _grpo_error(monkeypatch, capsys, tmp_path, *args: str) -> str:
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.weighting.step_size", "nan"], "model.weighting.step_size must be a finite number, got nan"),
        (["--model.loss.beta=-inf"], "model.loss.beta must be a finite number, got -inf"),
        (["--model.weighting.step_size", ".inf"], "model.weighting.step_size must be a finite number >= 0, got inf"),
        (["--model.loss.beta", "-1"], "model.loss.beta must be a finite number > 0, got -1.0"),
        (["--data.init_args.batch_size", "abc"], "data.batch_size: expected int, got 'abc'"),
        (["--data.init_args.batch_size", "0"], "data.batch_size and data.eval_batch_size must be >= 1"),
        (["--data.init_args.path", "/no/such.jsonl"], "data.path: /no/such.jsonl does not exist"),
        (["--data.init_args.tokenizer", "/no/such/dir"], "data.tokenizer: /no/such/dir does not exist"),
        (["--no_such_option", "1"], "unrecognized arguments"),
        (["--trainer.max_steps", "-2"], "trainer.max_steps must be -1 (no limit) or >= 0, got -2"),
        (["--seed_everything", "abc"], "seed_everything: expected bool or int, got 'abc'"),
        (["--model.loss", "dpo"], "model.loss: unknown 'dpo'; choose one of DPO, IPO, Hinge, Exponential,"),
        (["--model.weighting", "robust"], "model.weighting: unknown 'robust'; choose one of UniformWeighting,"),
    ],
)
def test_grpo_errors_are_one_line_naming_the_setting(monkeypatch, capsys, tmp_path, args, message):
    line = _grpo_error(monkeypatch, capsys, tmp_path, *args)
    assert line.startswith("grpo: error: ") and message in line


def test_a_yaml_syntax_error_names_the_file_and_line(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n  x: 2\n")
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--config", str(bad))
    assert line.startswith(f"grpo: error: {bad}, line 3, column 4: not valid YAML (while parsing a flow sequence")


def test_resuming_past_max_epochs_is_one_line(monkeypatch, capsys, tmp_path):
    """Lightning refuses it at restore with a MisconfigurationException and 30 lines of traceback."""
    ckpt = tmp_path / "e3.ckpt"
    torch.save({"epoch": 3, "global_step": 30, "state_dict": {}}, ckpt)
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", str(ckpt), "--trainer.max_epochs", "2")
    assert line == (
        f"grpo: error: --ckpt_path {ckpt} was saved in epoch 3, past trainer.max_epochs=2: "
        "resume with --trainer.max_epochs 4 or more"
    )


def test_runs_without_a_logger_in_one_folder_keep_each_config(monkeypatch, tmp_path, caplog):
    """``--trainer.logger false`` writes into ``default_root_dir``: a second run there writes ``config-v1.yaml``
    (Lightning's SaveConfigCallback stopped it with a RuntimeError), and ``--ckpt_path last`` looks in
    ``<default_root_dir>/checkpoints`` (not in ``lightning_logs/``)."""
    from grpo_lightning.cli.app import main

    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_CLI])
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "checkpoints/last.ckpt").is_file()
    with caplog.at_level(logging.INFO):
        cli = main(["fit", *TINY_CLI, "--trainer.max_steps", "2", "--ckpt_path", "last"])
    assert (tmp_path / "config-v1.yaml").is_file()
    assert cli.config.fit.ckpt_path == str(tmp_path / "checkpoints/last.ckpt") and cli.trainer.global_step == 2


def test_the_debug_overlay_writes_no_files(monkeypatch, tmp_path):
    """configs/debug.yaml (fast_dev_run) writes neither logs nor checkpoints: Lightning's ``on_train_end`` used to
    write ``checkpoints/last.ckpt`` into the working directory, one more ``last-vN.ckpt`` per run."""
    from grpo_lightning.cli.app import main

    monkeypatch.chdir(tmp_path)
    debug = ["--config", str(ROOT / "configs/default.yaml"), "--config", str(ROOT / "configs/debug.yaml")]
    main(["fit", *debug, *TINY_DATA_FLAGS])
    assert list(tmp_path.iterdir()) == []


def test_grpo_data_error_names_file_row_and_field(monkeypatch, capsys, tmp_path):
    rows = _rows()
    rows[4]["rejected"] = 7
    path = _jsonl(tmp_path / "d.jsonl", rows)
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--data.init_args.path", str(path))
    assert line == f"grpo: error: {path}, row 5, field 'rejected': expected text, got int 7. " + (
        "Every prompt/chosen/rejected value must be a string."
    )


class _Payload:
    """Unpickling it creates a file: the sign that loading a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_remote_checkpoint_is_refused_and_a_pickled_payload_never_runs(monkeypatch, capsys, tmp_path):
    """Lightning loads an http(s) ``ckpt_path`` with ``weights_only=False``: it is refused before any load. A local
    file with a pickled object is refused by ``weights_only=True`` (by the CLI's first read and by the trainer's
    checkpoint IO), and the payload does not run."""
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", "http://127.0.0.1:9/evil.ckpt")
    assert line == (
        "grpo: error: --ckpt_path http://127.0.0.1:9/evil.ckpt: a remote checkpoint is not loaded; download it "
        "and pass the local file (read with weights_only=True and checked against this run)"
    )
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload(marker)}}, evil)
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", str(evil))
    assert f"checkpoint {evil} holds objects other than tensors and plain data; refused" in line
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from grpo_lightning.training.checkpoints import CheckpointError, NamedCheckpointIO

    io = NamedCheckpointIO(TorchCheckpointIO())
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        io.load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="weights_only=False is refused"):
        io.load_checkpoint(evil, weights_only=False)
    with pytest.raises(CheckpointError, match="remote checkpoint is not loaded"):
        io.load_checkpoint("https://example.org/a.ckpt")
    assert not marker.exists()


def test_unreadable_checkpoint_names_the_file(monkeypatch, capsys, tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[:2000])  # a copy cut short
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", str(cut))
    assert f"checkpoint {cut} cannot be read" in line and "truncated" in line
    # The same through the trainer's checkpoint IO (a checkpoint the CLI did not read first).
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from grpo_lightning.training.checkpoints import CheckpointError, NamedCheckpointIO

    with pytest.raises(CheckpointError, match=rf"checkpoint {cut} cannot be read"):
        NamedCheckpointIO(TorchCheckpointIO()).load_checkpoint(cut)


def test_grpo_error_without_traceback_in_a_real_process_and_with_one_on_request(tmp_path):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "grpo_lightning.cli.app", "fit", *TINY_CLI, "--model.loss.beta", "-1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("GRPO_TRACEBACK", None)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    assert "grpo: error: model.loss.beta must be a finite number > 0, got -1.0\n" in proc.stderr
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "GRPO_TRACEBACK": "1"}, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "model.loss.beta" in proc.stderr
