"""The paper's two-stage GOQA recipe end to end on a tiny model: SFT → export → GR-IPO."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL_FLAGS
from transformers import AutoModelForCausalLM

from grpo_lightning.cli.app import main
from grpo_lightning.data.sources.goqa import PAPER_COUNTRIES
from grpo_lightning.metrics import eval_tags

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_MODEL_FLAGS,
    "--data.batch_size",
    "8",
    "--trainer.enable_model_summary",
    "false",
]


@pytest.mark.slow
def test_sft_then_group_robust_ipo(goqa_csv, tmp_path):
    sft = main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/experiment/goqa_tiny_sft.yaml"),
            "--data.path",
            str(goqa_csv),
            *TINY,
            "--trainer.max_epochs",
            "1",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    hf_dir = Path(sft.trainer.log_dir) / "hf_model"
    assert (hf_dir / "config.json").is_file() and (hf_dir / "tokenizer.json").is_file()
    assert sft.trainer.callback_metrics["val/loss"] > 0  # −log π(y_w|x) of the chosen letter

    robust = main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/experiment/goqa_tiny_gripo.yaml"),
            "--data.path",
            str(goqa_csv),
            *TINY,
            "--model.policy.init_args.name_or_path",
            str(hf_dir),
            "--trainer.max_steps",
            "3",
            "--trainer.val_check_interval",
            "3",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    # Both policy and reference started from the SFT model, and the tokenizer is the saved one.
    exported = AutoModelForCausalLM.from_pretrained(hf_dir)
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(robust.model.policy.reference.state_dict()[name], value)
    assert robust.datamodule.tokenizer.get_vocab() == sft.datamodule.tokenizer.get_vocab()
    assert robust.model.group_names == list(PAPER_COUNTRIES)
    missing = set(eval_tags("val", PAPER_COUNTRIES)) - set(robust.trainer.logged_metrics)
    assert not missing, sorted(missing)
