"""The cross-fitted GOQA experiment (scripts/goqa_experiment.py, its statistics in analysis/goqa.py): the paired
bootstrap over questions on hand-checkable numbers, the table from earlier runs' scores, the data argument, and
(slow) the whole command on the tiny model."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import PAPER_COUNTRIES, TINY_MODEL_FLAGS

from grpo_lightning.analysis.stats import bootstrap_counts, percentile_interval, ratio_of_sums

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "configs" / "experiment"


def _load_script():
    """The command is a script of the checkout (scripts/), not a module of the package: loaded from its path."""
    spec = importlib.util.spec_from_file_location("goqa_experiment", ROOT / "scripts" / "goqa_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


goqa_experiment = _load_script()


def test_bootstrap_counts_draw_n_of_n_and_are_seeded() -> None:
    counts = bootstrap_counts(5, 100, seed=3)
    assert counts.shape == (100, 5) and (counts.sum(1) == 5).all() and (counts >= 0).all()
    assert torch.equal(counts, bootstrap_counts(5, 100, seed=3))
    assert not torch.equal(counts, bootstrap_counts(5, 100, seed=4))


def test_pairing_resamples_the_same_questions_for_every_method() -> None:
    """Two questions of one country, one pair each: method A's losses 1 and 3, B's 2 and 4. The three resamples
    {q1, q1}, {q2, q2}, {q1, q2} give A 1, 3, 2 and B 2, 4, 3: each method's value varies, but B − A is 1 in every
    resample, because both are computed on the same questions. Unpaired resamples (A on {q1, q1}, B on {q2, q2})
    would give B − A = 3."""
    counts = torch.tensor([[2, 0], [0, 2], [1, 1]])
    n = torch.ones(2, 1)
    a = ratio_of_sums(counts, torch.tensor([[1.0], [3.0]]), n)
    b = ratio_of_sums(counts, torch.tensor([[2.0], [4.0]]), n)
    assert a[:, 0].tolist() == [1.0, 3.0, 2.0] and b[:, 0].tolist() == [2.0, 4.0, 3.0]
    lo, hi = percentile_interval(b - a)
    assert lo.item() == hi.item() == 1.0
    lo, hi = percentile_interval(a)
    assert lo.item() == pytest.approx(1.05) and hi.item() == pytest.approx(2.95)  # linear interpolation over 1, 2, 3


def test_ratio_of_sums_pools_pairs_and_marks_a_missing_group() -> None:
    """A question with two pairs (sum 10) counts as two observations: the mean over {q1: 2, 8; q2: 5} is 15/3 = 5;
    a resample without any question of country 2 has no value there (NaN)."""
    sums = torch.tensor([[10.0, 0.0], [5.0, 7.0]])
    n = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    out = ratio_of_sums(torch.tensor([[1, 1], [2, 0]]), sums, n)
    assert out[0].tolist() == [5.0, 7.0]
    assert out[1, 0].item() == 5.0 and out[1, 1].isnan()


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
