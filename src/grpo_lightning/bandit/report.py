"""Tables, CSV files and figures of the bandit sweep (mean ± standard error over seeds)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from grpo_lightning.analysis.stats import format_mean_se, mean_se
from grpo_lightning.bandit.env import DTYPE, NUM_GROUPS

if TYPE_CHECKING:
    from grpo_lightning.bandit.trainer import FamilyResult


CSV_COLUMNS = [
    "scenario",
    "method",
    "seed",
    "max_val_group_loss",
    "max_reward_err",
    "avg_val_group_loss",
    "val_group_loss_0",
    "val_group_loss_1",
    "reward_err_0",
    "reward_err_1",
    "weight_0",
    "weight_1",
]


def result_rows(scenario: str, result: FamilyResult) -> list[dict]:
    rows = []
    for i, spec in enumerate(result.specs):
        for j, seed in enumerate(result.seeds):
            r = result.run_index(i, j)
            vl, re, w = result.val_group_loss[r], result.reward_err[r], result.weights[r]
            rows.append(
                {
                    "scenario": scenario,
                    "method": spec.method,
                    "seed": seed,
                    "max_val_group_loss": vl.max().item(),
                    "max_reward_err": re.max().item(),
                    "avg_val_group_loss": vl.mean().item(),
                    "val_group_loss_0": vl[0].item(),
                    "val_group_loss_1": vl[1].item(),
                    "reward_err_0": re[0].item(),
                    "reward_err_1": re[1].item(),
                    "weight_0": w[0].item(),
                    "weight_1": w[1].item(),
                }
            )
    return rows


def summarise(rows: list[dict], key: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(scenario, method) → (mean, s.e.) of ``key`` over seeds."""
    cells: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        cells.setdefault((row["scenario"], row["method"]), []).append(row[key])
    return {k: tuple(t.item() for t in mean_se(torch.tensor(v, dtype=DTYPE))) for k, v in cells.items()}


def format_table(rows: list[dict]) -> str:
    """Worst-group validation loss, worst-group reward error and average (over groups) validation
    loss, mean ± s.e. over seeds, one line per (scenario, method)."""
    loss, err = summarise(rows, "max_val_group_loss"), summarise(rows, "max_reward_err")
    avg = summarise(rows, "avg_val_group_loss")
    lines = [f"{'scenario':<18} {'method':<11} {'max val group loss':>24} {'max reward err':>22} {'avg val loss':>22}"]
    for key in loss:
        (lm, ls), (em, es), (am, as_) = loss[key], err[key], avg[key]
        cells = [format_mean_se(lm, ls, widths=(14, 7)), format_mean_se(em, es, widths=(12, 7))]
        lines.append(f"{key[0]:<18} {key[1]:<11} {' '.join(cells)} {format_mean_se(am, as_, widths=(12, 7))}")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(path: Path, scenario: str, families: dict[str, FamilyResult]) -> None:
    """Worst-group validation loss over steps, mean ± s.e. over seeds, one panel per loss family."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4), squeeze=False)
    for ax, (family, res) in zip(axes[0], families.items(), strict=True):
        steps = torch.tensor(res.history_steps)
        hist = res.history_max_val.view(len(steps), len(res.specs), len(res.seeds))
        mean, se = mean_se(hist, dim=-1)
        for i, spec in enumerate(res.specs):
            ax.plot(steps, mean[:, i], label=spec.method)
            ax.fill_between(steps, mean[:, i] - se[:, i], mean[:, i] + se[:, i], alpha=0.25)
        ax.set_xlabel("α steps (closed-form θ)" if family == "ipo" else "gradient steps")
        ax.set_ylabel("max validation group loss")
        ax.set_title(f"{scenario}: {family.upper()} family")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bars(path: Path, rows: list[dict]) -> None:
    """Final max validation group loss and max reward error per scenario and method (mean ± s.e.)."""
    plt = _plt()
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    metrics = [("max_val_group_loss", "max validation group loss"), ("max_reward_err", "max reward error")]
    fig, axes = plt.subplots(len(metrics), len(scenarios), figsize=(4.5 * len(scenarios), 7), squeeze=False)
    for i, (key, label) in enumerate(metrics):
        stats = summarise(rows, key)
        for j, sc in enumerate(scenarios):
            methods = [m for (s, m) in stats if s == sc]
            means = [stats[(sc, m)][0] for m in methods]
            ses = [stats[(sc, m)][1] for m in methods]
            ax = axes[i][j]
            ax.bar(methods, means, yerr=ses, capsize=3, color=[f"C{k}" for k in range(len(methods))])
            ax.set_title(sc)
            ax.set_ylabel(label)
            if key == "max_val_group_loss":  # DPO (≈0.5) and IPO (≈20) losses on one axis
                ax.set_yscale("log")
            ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chi_rows(res: FamilyResult) -> list[dict]:
    """Average and worst-group validation loss per χ, mean ± s.e. over seeds."""
    s = len(res.seeds)
    vl = res.val_group_loss.view(len(res.specs), s, NUM_GROUPS)
    avg_m, avg_s = mean_se(vl.mean(-1))
    worst_m, worst_s = mean_se(vl.max(-1).values)
    return [
        {
            "chi": spec.chi,
            "avg_val_loss_mean": avg_m[i].item(),
            "avg_val_loss_se": avg_s[i].item(),
            "worst_val_loss_mean": worst_m[i].item(),
            "worst_val_loss_se": worst_s[i].item(),
            "num_seeds": s,
        }
        for i, spec in enumerate(res.specs)
    ]


def plot_chi(path: Path, rows: list[dict]) -> None:
    plt = _plt()
    chis = [r["chi"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("avg_val_loss", "average group loss"), ("worst_val_loss", "worst group loss")):
        ax.errorbar(chis, [r[f"{key}_mean"] for r in rows], yerr=[r[f"{key}_se"] for r in rows], marker="o", capsize=3, label=label)  # fmt: skip
    ax.set_xlabel("χ")
    ax.set_ylabel("validation loss")
    ax.set_title("GR-DPO trade-off, uneven-imbalanced")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
