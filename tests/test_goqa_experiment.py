"""The one-command GOQA experiment (goqa_experiment.py) end to end on the tiny GOQA configs: SFT → start-model test →
IPO and GR-IPO fit + test → table, csv and figure. The real-model defaults are the same code with other configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PAPER_COUNTRIES, TINY_MODEL_FLAGS

from grpo_lightning import goqa_experiment

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "configs" / "experiment"


@pytest.mark.slow
def test_one_command_experiment_writes_the_table(goqa_csv, tmp_path, capsys):
    goqa_experiment.main(
        [
            "--data", str(goqa_csv), "--out", str(tmp_path / "out"), "--logs", str(tmp_path / "logs"),
            "--max-steps", "2", "--sft", "--sft-epochs", "1", "--threads", "1",
            "--sft-config", str(EXP / "goqa_tiny_sft.yaml"),
            "--ipo-config", str(EXP / "goqa_tiny_ipo.yaml"),
            "--gripo-config", str(EXP / "goqa_tiny_gripo.yaml"),
            "--", *TINY_MODEL_FLAGS, "--data.batch_size", "8",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| SFT |" in printed and "| IPO |" in printed and "| GR-IPO |" in printed
    for country in PAPER_COUNTRIES:
        assert f"| {country} |" in printed
    out = tmp_path / "out"
    assert (out / "figure3.png").stat().st_size > 0 and (out / "results.csv").is_file()
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 4  # header + SFT, IPO, GR-IPO
    header = rows[0].split(",")
    assert "min_group_opinion_alignment" in header and "opinion_alignment/Japan" in header
    assert "grpo fit --config" in (out / "commands.sh").read_text()
