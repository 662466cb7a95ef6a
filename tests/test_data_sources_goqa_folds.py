"""Cross-fitting folds over GOQA questions (data/goqa_folds.py, ``GlobalOpinionQADataModule(num_folds=…)``): the
folds partition the questions, every country's pairs spread over them, a fold is a function of the question, and
the three cross-fitted SmolLM2 configs (IPO, IS-IPO, GR-IPO) resolve the same folds and the same θ settings."""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import PAPER_COUNTRIES, composed_yaml

from grpo_lightning.data import GlobalOpinionQADataModule
from grpo_lightning.data.sources.goqa_folds import assign_folds, fold_splits

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "configs" / "experiment"


def write_goqa(path: Path, n_questions: int = 60, seed: int = 0, extra: int = 0) -> Path:
    """GOQA's schema; question q is asked in 1-3 of the paper's countries (so the strata differ), 3 options."""
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "selections", "options", "source"])
        for q in range(n_questions + extra):
            countries = rng.sample(PAPER_COUNTRIES, rng.choice([1, 1, 1, 2, 3]))
            body = ", ".join(f"'{c}': {[round(rng.random(), 3) for _ in range(3)]}" for c in countries)
            writer.writerow([f"Question {q}?", f"defaultdict(<class 'list'>, {{{body}}})", "['a', 'b', 'c']", ""])
    return path


def splits_by_fold(path: Path, k: int = 3, seed: int = 0) -> list[dict[str, str]]:
    """Per fold: question (prompt minus the country) → split, read from the data module's rows."""
    out = []
    for fold in range(k):
        rows = GlobalOpinionQADataModule(path=str(path), num_folds=k, fold=fold, seed=seed).load_rows()
        by_question: dict[int, set[str]] = defaultdict(set)
        for qid, split in zip(rows["question_id"], rows["split"], strict=True):
            by_question[qid].add(split)
        assert all(len(s) == 1 for s in by_question.values())  # all pairs of a question in one split
        out.append({qid: s.pop() for qid, s in by_question.items()})
    return out


def test_the_folds_partition_the_questions(tmp_path: Path) -> None:
    folds = splits_by_fold(write_goqa(tmp_path / "goqa.csv"))
    questions = set(folds[0])
    tests = [{q for q, s in f.items() if s == "test"} for f in folds]
    assert set().union(*tests) == questions and sum(map(len, tests)) == len(questions)  # each in exactly one
    for fold, split in enumerate(folds):
        assert set(split) == questions
        train = {q for q, s in split.items() if s in ("train", "val")}
        assert not train & tests[fold] and train | tests[fold] == questions
        assert sum(s == "val" for s in split.values()) >= 1


def test_every_country_spreads_evenly_over_the_folds(tmp_path: Path) -> None:
    path = write_goqa(tmp_path / "goqa.csv")
    rows = GlobalOpinionQADataModule(path=str(path), num_folds=3, fold=0).load_rows()
    strata = defaultdict(set)
    for qid, group in zip(rows["question_id"], rows["group"], strict=True):
        strata[qid].add(group)
    counts: Counter = Counter()
    for fold in range(3):
        rows = GlobalOpinionQADataModule(path=str(path), num_folds=3, fold=fold).load_rows()
        counts.update((g, fold) for g, s in zip(rows["group"], rows["split"], strict=True) if s == "test")
    for country in PAPER_COUNTRIES:
        per_fold = [counts[(country, f)] for f in range(3)]
        n_strata = len({frozenset(s) for s in strata.values() if country in s})
        assert min(per_fold) >= 1 and max(per_fold) - min(per_fold) <= n_strata, (country, per_fold)


def test_a_fold_is_a_function_of_the_question_and_the_seed() -> None:
    strata = {f"q{i}": ("A",) if i % 3 else ("A", "B") for i in range(40)}
    folds = assign_folds(strata, 4, seed=0)
    assert folds == assign_folds(dict(reversed(strata.items())), 4, seed=0)  # row order does not matter
    # Within a stratum the sizes differ by at most one.
    for stratum in set(strata.values()):
        sizes = Counter(folds[q] for q, s in strata.items() if s == stratum)
        assert max(sizes.values()) - min(sizes.values()) <= 1 and len(sizes) == 4
    # A question added to another stratum moves nobody.
    assert {q: f for q, f in assign_folds({**strata, "new": ("C",)}, 4, seed=0).items() if q != "new"} == folds
    assert assign_folds(strata, 4, seed=1) != folds


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_folds": 1}, "num_folds must be an int >= 2"), ({"num_folds": 3, "fold": 3}, "data.fold must be"),
     ({"num_folds": 3, "fold_val_fraction": 0.0}, "fold_val_fraction")],
)  # fmt: skip
def test_fold_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GlobalOpinionQADataModule(path="x.csv", **kwargs)


def test_fold_splits_put_each_question_in_one_split() -> None:
    countries = {f"q{i}": ["A"] if i % 2 else ["A", "B"] for i in range(30)}
    split = fold_splits(countries, 3, 1, seed=0, val_fraction=0.2)
    assert Counter(split.values()) == {"test": 10, "train": 16, "val": 4}


def test_the_three_smollm2_methods_resolve_the_same_folds_and_theta_settings(tmp_path: Path) -> None:
    configs = {m: composed_yaml(EXP / f"goqa_smollm2_{m}.yaml") for m in ("ipo", "isipo", "gripo")}
    data = [c["data"] for c in configs.values()]
    assert data[0] == data[1] == data[2]
    assert data[0]["init_args"]["num_folds"] == 3 and data[0]["init_args"]["seed"] == "${seed_everything}"
    runs = [
        {k: v for k, v in c["trainer"].items() if k != "logger"} | {"held_out": c["held_out"]} for c in configs.values()
    ]
    assert runs[0] == runs[1] == runs[2]  # epochs, schedule callback, held-out scoring
    theta = [
        {k: v for k, v in c["model"].items() if k not in ("weighting", "lr_scheduler_monitor")}
        for c in configs.values()
    ]
    assert theta[0] == theta[1] == theta[2]  # loss, β, optimizer, lr, policy, LoRA: identical
    weighting = {m: c["model"]["weighting"] for m, c in configs.items()}
    assert weighting["gripo"]["estimator"] == weighting["isipo"]["init_args"]["estimator"] == "mean"
    # The same settings give the same folds, whichever method's config they come from.
    path = write_goqa(tmp_path / "goqa.csv", n_questions=30)
    splits = []
    for c in configs.values():
        args = {k: c["data"]["init_args"][k] for k in ("num_folds", "fold", "fold_val_fraction", "countries")}
        rows = GlobalOpinionQADataModule(path=str(path), seed=0, **args).load_rows()
        splits.append(list(zip(rows["question_id"], rows["group"], rows["split"], strict=True)))
    assert splits[0] == splits[1] == splits[2]


@pytest.mark.slow
def test_held_out_scores_equal_grpo_predict_from_the_last_checkpoint(goqa_csv, tmp_path: Path) -> None:
    """``--held_out.split test`` scores the held-out fold in the fit's process; ``grpo predict`` from last.ckpt on the
    same fold gives the same pairs and values, and its per-item opinion-alignment file the same items."""
    from conftest import TINY_MODEL_FLAGS

    from grpo_lightning.cli.app import main

    common = [
        "--config", str(EXP / "goqa_tiny_ipo.yaml"), "--data.path", str(goqa_csv), *TINY_MODEL_FLAGS,
        "--data.batch_size", "8", "--data.init_args.num_folds", "2", "--data.init_args.fold", "1",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ]  # fmt: skip
    fit = main(["fit", *common, "--trainer.max_steps", "1", "--held_out.split", "test",
                "--checkpoint.dirpath", str(tmp_path / "ckpt")])  # fmt: skip
    fit_dir = Path(fit.trainer.log_dir)
    pred = main(["predict", *common, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    pred_dir = Path(pred.trainer.log_dir)

    def read(path: Path, key: tuple[str, ...]) -> dict[tuple, float]:
        value = "loss" if "loss" in path.read_text().splitlines()[0] else "opinion_alignment"
        return {tuple(r[k] for k in key): float(r[value]) for r in csv.DictReader(path.open())}

    held = read(fit_dir / "held_out_test.csv", ("source_row", "group"))
    predicted = read(pred_dir / "predictions.csv", ("source_row", "group"))
    assert held.keys() == predicted.keys() and len(held) > 0
    assert all(held[k] == pytest.approx(predicted[k], rel=1e-4, abs=1e-3) for k in held)
    items = read(fit_dir / "opinion_alignment_test.csv", ("source_row", "group"))
    assert items.keys() == read(pred_dir / "opinion_alignment_test.csv", ("source_row", "group")).keys()
