"""The cross-fitted GOQA experiment (scripts/goqa_experiment.py, its statistics in analysis/goqa.py): the table
from earlier runs' scores, the data argument, and (slow) the whole command on the tiny model. The paired bootstrap
over questions on hand-checkable numbers: test_analysis_stats.py."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from conftest import PAPER_COUNTRIES, TINY_MODEL_FLAGS

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "configs" / "experiment"


def _load_script():
    """The command is a script of the checkout (scripts/), not a module of the package: loaded from its path."""
    spec = importlib.util.spec_from_file_location("goqa_experiment", ROOT / "scripts" / "goqa_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


goqa_experiment = _load_script()


def scores(tmp_path: Path) -> Path:
    """An earlier run's --out directory: 2 questions × Japan, 3 methods; GR-IPO's loss is IPO's − 100 on both
    questions, IS-IPO's equals IPO's; margins 1, 0 (a tie) and −1."""
    out = tmp_path / "run"
    out.mkdir()
    pairs, items = [], []
    for model, shift, margins in (("IPO", 0, (1, 0)), ("IS-IPO", 0, (1, -1)), ("GR-IPO", -100, (1, 1))):
        for question, loss, margin in zip(("q1", "q2"), (1000, 2000), margins, strict=True):
            tags = {"seed": 0, "fold": 0, "model": model, "question": question, "group": "Japan"}
            pairs.append({**tags, "source_row": 1, "loss": loss + shift, "margin": margin})
            items.append({**tags, "source_row": 1, "opinion_alignment": 0.5})
    for name, rows in (("scores.csv", pairs), ("alignment.csv", items)):
        with (out / name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return out


def test_the_table_from_earlier_scores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    goqa_experiment.main(
        ["--from-results", str(scores(tmp_path)), "--out", str(tmp_path / "out"), "--bootstrap", "200"]
    )
    printed = capsys.readouterr().out
    assert "Out-of-fold scores: 2 pairs per method" in printed and "200 resamples" in printed
    # Loss: IPO and IS-IPO 1500, GR-IPO 1400; the paired difference is −100 in every resample.
    assert (
        "| Japan | 2 | 1500 [1000, 2000] | 1500 [1000, 2000] | 1400 [900, 1900] | -100 [-100, -100] | -100 [-100, -100] |"
        in printed
    )
    # Reward accuracy, ties ½: IPO (1 + ½)/2 = 0.75, IS-IPO (1 + 0)/2 = 0.5, GR-IPO 1.
    assert "| Japan | 2 | 0.750 [0.500, 1.000] | 0.500 [0.000, 1.000] | 1.000 [1.000, 1.000] |" in printed
    assert "| worst country (highest) | 2 |" in printed and "**opinion alignment**" in printed
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    row = next(r for r in rows if r["metric"] == "loss" and r["country"] == "worst" and r["model"] == "GR-IPO − IPO")
    assert float(row["value"]) == float(row["lo"]) == float(row["hi"]) == -100
    assert (tmp_path / "out" / "figure.png").stat().st_size > 0


def test_the_data_must_be_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        goqa_experiment.main(["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--data PATH" in err and "--hub-id Anthropic/llm_global_opinions" in err


def test_combining_a_missing_results_dir_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        goqa_experiment.main(["--from-results", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "--from-results: no scores.csv in" in capsys.readouterr().err


@pytest.mark.slow
def test_one_command_scores_every_pair_out_of_fold(goqa_csv, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    isipo = tmp_path / "goqa_tiny_isipo.yaml"
    isipo.write_text(f"__base__: [{EXP / 'goqa_tiny_ipo.yaml'}, {ROOT / 'configs/weighting/importance.yaml'}]\n")
    goqa_experiment.main(
        [
            "--data", str(goqa_csv), "--out", str(tmp_path / "out"), "--logs", str(tmp_path / "logs"),
            "--folds", "2", "--max-steps", "1", "--no-cpu-speed", "--bootstrap", "50",
            "--ipo-config", str(EXP / "goqa_tiny_ipo.yaml"), "--isipo-config", str(isipo),
            "--gripo-config", str(EXP / "goqa_tiny_gripo.yaml"),
            "--", *TINY_MODEL_FLAGS, "--data.batch_size", "8",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    # 40 questions × 5 countries, one pair each: every pair scored once per method, over the two folds.
    assert "Out-of-fold scores: 200 pairs of the data's 200 per method" in printed
    for country in PAPER_COUNTRIES:
        assert f"| {country} |" in printed
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    for model in ("IPO", "IS-IPO", "GR-IPO"):
        keys = [(r["source_row"], r["group"]) for r in rows if r["model"] == model]
        assert len(keys) == len(set(keys)) == 200
    assert (tmp_path / "out" / "figure.png").stat().st_size > 0
    assert "--data.init_args.fold 1" in (tmp_path / "out" / "commands.sh").read_text()


def test_the_package_has_no_path_into_a_checkout() -> None:
    """The installed package reads no data path of its own and computes no repository root: the command that needs
    the checkout's configs is the script, and the data is always the user's --data or --hub-id."""
    package = ROOT / "src" / "grpo_lightning"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert "../shared" not in text and "shared/data" not in text, path
    assert not (package / "analysis" / "goqa_experiment.py").exists()
