"""A run's identity travels with its checkpoint: the tokenizer it was trained with (never one
trained again on the data at hand), and its method settings (``--ckpt_path last`` does not resume
another method's run; overlays and experiments log under names of their own); a resume past
``trainer.max_epochs`` is refused in one line."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL_FLAGS, grpo_error

from grpo_lightning.cli.app import main
from grpo_lightning.data.tokenization import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["river", "stone", "garden", "lantern", "harbor", "meadow", "copper", "violet", "thunder", "orchard"]
NEW_WORDS = ["quokka", "xylophone", "marmalade", "zeppelin"]
_grpo_error = grpo_error


def _rows(n: int, group: str, start: int, words: list[str]) -> list[dict]:
    rng = random.Random(f"{group}{start}")
    out = []
    for i in range(start, start + n):
        pick = rng.sample(words, 4)
        out.append(
            {
                "prompt": f"Question {i}: is the {pick[0]} near the {pick[1]}?",
                "chosen": f" yes, the {pick[2]} says so",
                "rejected": f" no, the {pick[3]} disagrees",
                "group": group,
            }
        )
    return out


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(path: Path, save_dir: Path, *extra: str) -> list[str]:
    return [
        "--data.init_args.path",
        str(path),
        "--data.init_args.max_length",
        "48",
        "--data.init_args.max_prompt_length",
        "40",
        "--data.init_args.batch_size",
        "8",
        *TINY_MODEL_FLAGS,
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
        "--trainer.logger.init_args.name",
        "run",
        "--trainer.max_epochs",
        "1",
        "--trainer.num_sanity_val_steps",
        "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One short ``grpo fit`` on a file of two groups, A and B."""
    root = tmp_path_factory.mktemp("identity")
    rows = _rows(40, "A", 0, WORDS) + _rows(40, "B", 100, WORDS)
    data = _jsonl(root / "data.jsonl", rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(["fit", *_args(data, root / "logs")])
    finally:
        torch.set_num_threads(threads)
    run = root / "logs" / "run" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return root, data, rows, run


def test_test_on_changed_data_uses_the_runs_tokenizer_and_the_shared_rows_keep_their_loss(fitted, tmp_path):
    """`grpo test` with the run's checkpoint on its file with rows of group B removed and rows with
    new words added: it runs with the run's tokenizer (the token ids of a shared prompt are
    unchanged; a tokenizer trained on the new file would differ), and group A, whose rows and
    split are unchanged, has exactly the test loss it has on the original file."""
    from transformers import AutoTokenizer

    root, data, rows, run = fitted
    changed = [r for r in rows if not (r["group"] == "B" and r["prompt"].startswith(("Question 10", "Question 11")))]
    changed += _rows(6, "B", 200, NEW_WORDS + WORDS[:4])
    assert len(changed) != len(rows)
    changed_path = _jsonl(tmp_path / "changed.jsonl", changed)
    ckpt = str(run / "checkpoints" / "last.ckpt")

    # One pair per batch, so a pair's loss does not depend on the padding its batch neighbours need.
    one = ("--data.init_args.eval_batch_size", "1")
    original = main(["test", *_args(data, tmp_path / "a", *one), "--ckpt_path", ckpt])
    on_changed = main(["test", *_args(changed_path, tmp_path / "b", *one), "--ckpt_path", ckpt])

    run_tokenizer = AutoTokenizer.from_pretrained(str(run / "tokenizer"))  # saved by the fit
    prompt = rows[0]["prompt"]
    ids = on_changed.datamodule.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids == run_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert on_changed.datamodule.tokenizer.get_vocab() == run_tokenizer.get_vocab()
    train = on_changed.datamodule.dataset("train")
    texts = [p + c for p, c in zip(train["prompt"], train["chosen"], strict=True)] + list(train["rejected"])
    retrained = train_tokenizer(texts)
    assert retrained.get_vocab() != run_tokenizer.get_vocab(), "the changed file must retrain to other ids"

    def group_a(cli):
        test = cli.datamodule.dataset("test")
        columns = zip(test["prompt"], test["chosen_ids"], test["rejected_ids"], test["group"], strict=True)
        return [(p, c, r) for p, c, r, g in columns if g == "A"]

    assert group_a(original) and group_a(original) == group_a(on_changed)
    a, b = original.trainer.callback_metrics, on_changed.trainer.callback_metrics
    assert torch.equal(a["test/loss/A"], b["test/loss/A"])
    assert torch.isfinite(b["test/loss"])


def test_a_checkpoint_with_another_vocabulary_is_refused_naming_both_sizes(fitted):
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    root, data, rows, run = fitted
    other = train_tokenizer([r["prompt"] + r["chosen"] for r in _rows(30, "C", 0, NEW_WORDS)], 300)
    with pytest.raises(ValueError, match=r"checkpoint's tokenizer has \d+ tokens, this run's \d+"):
        GroupRobustPreferenceModule.load_from_checkpoint(
            run / "checkpoints" / "last.ckpt", tokenizer=other, weights_only=True
        )


def test_evaluating_without_the_runs_tokenizer_is_refused(fitted, tmp_path):
    """A tokenizer is trained only for a fresh `fit` of the tiny model."""
    root, data, rows, run = fitted
    with pytest.raises(ValueError, match=r"no --ckpt_path and data.tokenizer is not set"):
        main(["test", *_args(data, tmp_path)])


def test_a_pretrained_policy_gets_its_own_tokenizer(tmp_path):
    """A local pretrained model under the default config keeps its own tokenizer (not one trained
    on the data with the model's embeddings)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    texts = [r["prompt"] + r["chosen"] for r in _rows(30, "A", 0, WORDS + NEW_WORDS)]
    tokenizer = train_tokenizer(texts, 300)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model_dir = tmp_path / "pretrained"
    AutoModelForCausalLM.from_config(config).save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    cli = main(
        [
            "--config",
            str(ROOT / "configs/default.yaml"),
            "--data.init_args.generated.num_pairs",
            "60",
            "--model.policy.init_args.name_or_path",
            str(model_dir),
            "--trainer.logger",
            "false",
        ],
        run=False,
    )
    assert cli.datamodule.tokenizer.get_vocab() == tokenizer.get_vocab()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["--model.loss", "DPO", "--model.loss.beta", "0.5"],
            ["model.loss: 'ipo' != 'dpo'", "model.loss.beta: 0.1 != 0.5"],
        ),
        (["--model.weighting", "RobustWeighting"], ["model.weighting: 'uniform' != 'robust'"]),
        (["--data.init_args.groups", "[B, A]"], ["data.groups: ['A', 'B'] != ['B', 'A']"]),
        ("other data", ["data source: {'path': ["]),
    ],
    ids=["loss", "weighting", "groups", "data"],
)
@pytest.mark.parametrize("ckpt", ["last", "path"])
def test_ckpt_path_refuses_a_run_with_other_method_settings(fitted, tmp_path, flags, named, ckpt):
    """``last`` and a named checkpoint file alike: LightningCLI would take the model settings from the file, so
    a loss or weighting given here (e.g. an overlay) would silently train the checkpoint's method under this
    run's name."""
    root, data, rows, run = fitted
    if flags == "other data":
        data, flags = _jsonl(tmp_path / "other.jsonl", rows[:-2]), []
    path = str(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="a run with other method settings") as err:  # before anything is built
        main(["fit", *_args(data, root / "logs", *flags), "--ckpt_path", "last" if ckpt == "last" else path])
    for difference in named:
        assert difference in str(err.value)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_ckpt_path_last_and_a_named_checkpoint_with_the_same_settings_resume(fitted, tmp_path):
    """The fitted run is complete, so resuming it only loads it (into a copy of its logs)."""
    root, data, rows, run = fitted
    logs = tmp_path / "logs"
    shutil.copytree(root / "logs", logs)
    ckpt = str(logs / "run" / "version_0" / "checkpoints" / "last.ckpt")
    cli = main(["fit", *_args(data, logs), "--ckpt_path", "last"])
    assert cli.config.fit.ckpt_path == ckpt
    # The checkpoint's tokenizer is the data's: resuming never trains another.
    assert cli.config.fit.data.init_args.tokenizer == ckpt
    assert cli.trainer.global_step == torch.load(ckpt, weights_only=True)["global_step"]
    cli = main(["fit", *_args(data, logs), "--ckpt_path", ckpt])
    assert cli.trainer.global_step == torch.load(ckpt, weights_only=True)["global_step"]


def _logger_name(*configs: str) -> str:
    args = [a for c in configs for a in ("--config", str(ROOT / c))]
    cli = main(args, run=False, instantiate=False)
    return cli.config.trainer.logger.init_args.name


def test_overlays_and_experiments_log_under_names_of_their_own():
    """`--ckpt_path last` looks under the logger's name, so runs of other methods must not share one."""
    names = {
        c: _logger_name("configs/default.yaml", *c)
        for c in [
            (),
            ("configs/loss/dpo.yaml",),
            ("configs/loss/cdpo.yaml",),
            ("configs/weighting/uniform.yaml",),
            ("configs/loss/dpo.yaml", "configs/weighting/uniform.yaml"),
        ]
    }
    assert len(set(names.values())) == len(names), names
    assert names[("configs/loss/dpo.yaml",)] == "dpo_robust"
    experiments = {
        p.name: _logger_name(str(p.relative_to(ROOT))) for p in sorted((ROOT / "configs/experiment").glob("*.yaml"))
    }
    assert len(set(experiments.values())) == len(experiments), experiments
    assert not set(experiments.values()) & set(names.values())


def test_splits_are_stable_and_a_checkpoint_knows_its_data(fitted, tmp_path, caplog):
    """Removing 10 rows and appending 15: every remaining pair keeps its split (a pair's split is a keyed hash of
    its prompt), so no training pair of the checkpoint is scored as a test pair. ``test`` on the edited data
    warns with the number of changed pairs; ``fit --ckpt_path`` on the run's own file edited in place (same
    source, other rows) is refused."""
    root, data, rows, run = fitted
    ckpt = str(run / "checkpoints" / "last.ckpt")
    from grpo_lightning.data.splits import prompt_position

    # 10 training rows removed (a change that leaves every split of every group non-empty), 15 rows appended.
    trained = [i for i, r in enumerate(rows) if prompt_position(r["prompt"], 0) < 0.8]
    gone = set(trained[::3][:10])
    edited_path = _jsonl(tmp_path / "edited.jsonl", [r for i, r in enumerate(rows) if i not in gone])
    edited_path.write_text(edited_path.read_text() + "".join(json.dumps(r) + "\n" for r in _rows(15, "B", 300, WORDS)))

    def split_of(cli) -> dict[tuple[str, str], str]:
        dm = cli.datamodule
        return {
            (p, g): name
            for name in ("train", "val", "test")
            for p, g in zip(dm.dataset(name)["prompt"], dm.dataset(name)["group"], strict=True)
        }

    with caplog.at_level("WARNING"):
        before = main(["test", *_args(data, tmp_path / "a"), "--ckpt_path", ckpt])
        after = main(["test", *_args(edited_path, tmp_path / "b"), "--ckpt_path", ckpt])
    old, new = split_of(before), split_of(after)
    kept = old.keys() & new.keys()
    assert len(kept) == len(old) - 10
    assert {k: old[k] for k in kept} == {k: new[k] for k in kept}
    warning = next(m for m in caplog.messages if "not the data the checkpoint was trained on" in m)
    assert "10 of its pairs are not in this data and 15 pairs are new" in warning
    assert "none of this data's val/test pairs were training pairs of the checkpoint" in warning

    original = data.read_text()
    try:
        data.write_text("".join(original.splitlines(True)[:-3]))  # the same file, 3 rows fewer
        with pytest.raises(
            ValueError, match=r"3 of its pairs are not in this data and 0 pairs are new .*; resuming would train"
        ):
            main(["fit", *_args(data, tmp_path / "c"), "--ckpt_path", ckpt])
    finally:
        data.write_text(original)


def test_resuming_past_max_epochs_is_one_line(monkeypatch, capsys, tmp_path):
    """Lightning refuses it at restore with a MisconfigurationException and 30 lines of traceback."""
    ckpt = tmp_path / "e3.ckpt"
    torch.save({"epoch": 3, "global_step": 30, "state_dict": {}}, ckpt)
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", str(ckpt), "--trainer.max_epochs", "2")
    assert line == (
        f"grpo: error: --ckpt_path {ckpt} was saved in epoch 3, past trainer.max_epochs=2: "
        "resume with --trainer.max_epochs 4 or more"
    )
