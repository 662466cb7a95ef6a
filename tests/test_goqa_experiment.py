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


def _row(seed: int, model: str, worst: float, align: float) -> dict:
    return {
        "seed": seed, "model": model, "test_dir": "", "fit_dir": "",
        "worst_group_loss": worst, "min_group_reward_acc": 0.5, "min_group_opinion_alignment": align,
        "min_group_logp_acc": 0.25, "loss/Japan": worst, "reward_acc/Japan": 0.5, "opinion_alignment/Japan": align,
        "logp_acc/Japan": 0.25,
    }  # fmt: skip


def test_combined_results_give_mean_se_over_seeds_and_the_paired_difference(tmp_path, capsys):
    """Hand numbers: IPO worst-group loss 20, 24 → 22.0 ± 2.0 (std of {20, 24} = 2√2, over √2); GR-IPO 16, 22 →
    19.0 ± 3.0; paired GR-IPO − IPO = −4, −2 → −3.0 ± 1.0, lower in 2 of 2. Alignment: 0.40, 0.50 vs 0.45, 0.45 →
    paired +0.05, −0.05 → 0.000 ± 0.050, lower in 1 of 2."""
    import csv

    files = []
    for seed, (ipo, gr, a_ipo, a_gr) in enumerate([(20.0, 16.0, 0.40, 0.45), (24.0, 22.0, 0.50, 0.45)]):
        path = tmp_path / f"seed{seed}.csv"
        rows = [_row(seed, "IPO", ipo, a_ipo), _row(seed, "GR-IPO", gr, a_gr)]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        files.append(str(path))
    goqa_experiment.main(["--from-results", *files, "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "mean ± s.e. over 2 seed(s) [0, 1]" in printed
    assert "| IPO | 22.0 ± 2.0 | 0.500 ± 0.000 | 0.450 ± 0.050 | 0.250 ± 0.000 |" in printed
    assert "| GR-IPO | 19.0 ± 3.0 | 0.500 ± 0.000 | 0.450 ± 0.000 | 0.250 ± 0.000 |" in printed
    assert (
        "| GR-IPO − IPO (paired) | -3.0 ± 1.0 (2/2 lower) | 0.000 ± 0.000 (0/2 lower) | 0.000 ± 0.050 (1/2 lower)"
        in printed
    )
    assert "| Japan | 22.0 / 0.500 / 0.450 | 19.0 / 0.500 / 0.450 |" in printed
    assert (tmp_path / "out" / "figure3.png").stat().st_size > 0


def test_combining_a_missing_results_file_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        goqa_experiment.main(["--from-results", str(tmp_path / "nope.csv")])
    assert exit_info.value.code == 2
    assert "--from-results: no such file" in capsys.readouterr().err
