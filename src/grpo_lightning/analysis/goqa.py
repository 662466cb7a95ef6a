"""The statistics and report of the cross-fitted GOQA experiment (``scripts/goqa_experiment.py``, ``make
goqa-smollm2``): from the out-of-fold scores of IPO, IS-IPO and GR-IPO to the per-country table, its CSV and the
figure.

Per country and method, over all the out-of-fold scores: IPO loss, reward accuracy (margin > 0, ties ½:
:func:`grpo_lightning.core.accuracy.pair_accuracy`) and opinion alignment (Durmus et al. 2023), the worst country's
value and the mean over countries, each with a 95 % *paired* bootstrap interval over questions: a resample draws
questions with replacement, and the same draw scores every method, so the differences GR-IPO − IPO and
GR-IPO − IS-IPO get intervals of their own. The worst country is the paper's criterion: GR-IPO minimises the worst
group's loss (Ramesh et al. 2024, whose GOQA figures report the maximum group loss and the minimum group accuracy).

The inputs are rows of CSV files: ``scores.csv`` (one row per scored pair: ``seed``, ``fold``, ``model``,
``question``, ``group``, ``source_row``, ``loss``, ``margin``) and ``alignment.csv`` (one row per (question, country)
item: the same keys and ``opinion_alignment``), written by :func:`report` and read back by ``--from-results``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from grpo_lightning.analysis.runs import read_scalars
from grpo_lightning.analysis.stats import bootstrap_counts, format_interval, percentile_interval, ratio_of_sums
from grpo_lightning.core.accuracy import pair_accuracy
from grpo_lightning.metrics.tags import group_weight_tag

#: The methods, in the order they run and are shown: config name → label.
LABELS = {"ipo": "IPO", "isipo": "IS-IPO", "gripo": "GR-IPO"}
METHODS = tuple(LABELS)
#: The paired differences reported, (a, b) for a − b.
DIFFERENCES = (("GR-IPO", "IPO"), ("GR-IPO", "IS-IPO"))
METRICS = {"loss": "IPO loss", "reward_acc": "reward accuracy", "opinion_alignment": "opinion alignment"}


# ------------------------------------------------------------------------------------------------ files
def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def question_texts(data: str | None, hub_id: str | None, seed: int) -> tuple[dict[int, str], int]:
    """The question text of each table row (1-based ``source_row``), the bootstrap's unit (two rows asking one
    question are one unit), and how many pairs the data makes for the paper's countries (to state that every pair
    was scored). ``data`` a local file or directory, else ``hub_id`` (as ``--data`` / ``--hub-id``)."""
    from grpo_lightning.data.sources.goqa import DEFAULT_HUB_ID, PAPER_COUNTRIES, build_goqa_pairs, load_goqa_table

    table = load_goqa_table(data, hub_id=hub_id or DEFAULT_HUB_ID)
    texts = {i + 1: str(q).strip() for i, q in enumerate(table["question"])}
    pairs, _ = build_goqa_pairs(table, groups=PAPER_COUNTRIES, seed=seed)
    return texts, len(pairs)


# ------------------------------------------------------------------------------------------------ statistics
def unit_tables(
    rows: list[dict], value: str, models: list[str], countries: list[str], questions: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per model, ``sums[q, g]`` (the sum of ``value`` over the rows of question q in country g, seeds and folds
    pooled) and ``n[q, g]`` (their number), ``(Q, G)`` each: what :func:`ratio_of_sums` resamples."""
    q_index = {q: i for i, q in enumerate(questions)}
    g_index = {g: i for i, g in enumerate(countries)}
    sums = {m: torch.zeros(len(questions), len(countries), dtype=torch.float64) for m in models}
    n = {m: torch.zeros(len(questions), len(countries), dtype=torch.float64) for m in models}
    for r in rows:
        q, g = q_index[r["question"]], g_index[r["group"]]
        sums[r["model"]][q, g] += float(r[value])
        n[r["model"]][q, g] += 1
    return sums, n


def summarise(
    pairs: list[dict], items: list[dict], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> list[dict]:
    """Point values and paired bootstrap intervals: one row per (metric, country or summary, model or difference).

    Rows carry ``metric`` (``loss``, ``reward_acc``, ``opinion_alignment``), ``country`` (a country, ``worst``
    (loss: the largest country loss; accuracy and alignment: the smallest) or ``mean`` (the mean over countries)),
    ``model`` (a method, or ``A − B`` for a paired difference), ``value``, ``lo``, ``hi`` and ``n`` (the pairs or
    items behind the value). Every statistic is computed on the same ``n_boot`` resamples of the questions
    (:func:`grpo_lightning.analysis.stats.bootstrap_counts`), so the interval of a difference reflects the pairing.
    Adds each pair's ``reward_acc`` (its margin's accuracy credit) to ``pairs``.
    """
    models = [m for m in LABELS.values() if any(r["model"] == m for r in pairs)]
    countries = list(dict.fromkeys(r["group"] for r in [*pairs, *items]))
    questions = sorted({r["question"] for r in [*pairs, *items]})
    counts = bootstrap_counts(len(questions), n_boot, seed)
    everything = torch.ones(1, len(questions), dtype=torch.int64)  # the point estimate: every question once
    # Ties (margin 0, e.g. an untrained model) count ½, as every accuracy the template logs.
    credit = pair_accuracy(torch.tensor([float(r["margin"]) for r in pairs], dtype=torch.float64))
    for r, c in zip(pairs, credit.tolist(), strict=True):
        r["reward_acc"] = c
    out: list[dict] = []
    for metric, rows in (("loss", pairs), ("reward_acc", pairs), ("opinion_alignment", items)):
        sums, n = unit_tables(rows, metric, models, countries, questions)
        point = {m: ratio_of_sums(everything, sums[m], n[m])[0] for m in models}  # (G,)
        boot = {m: ratio_of_sums(counts, sums[m], n[m]) for m in models}  # (B, G)

        values = {m: _statistics(point[m], countries, metric) for m in models}
        samples = {m: _statistics(boot[m], countries, metric) for m in models}
        for a, b in DIFFERENCES:
            if a in models and b in models:
                label = f"{a} − {b}"
                values[label] = {k: values[a][k] - values[b][k] for k in values[a]}
                samples[label] = {k: samples[a][k] - samples[b][k] for k in samples[a]}
        per_country = n[models[0]].sum(0)
        for country in [*countries, "worst", "mean"]:
            n_obs = int(per_country[countries.index(country)] if country in countries else per_country.sum())
            for label in values:
                lo, hi = percentile_interval(samples[label][country], level)
                out.append(
                    {
                        "metric": metric, "country": country, "model": label, "n": n_obs,
                        "value": float(values[label][country]), "lo": float(lo), "hi": float(hi),
                    }
                )  # fmt: skip
    return out


def _statistics(x: torch.Tensor, countries: list[str], metric: str) -> dict[str, torch.Tensor]:
    """Each country's value, the worst country's (loss: the largest; accuracy, alignment: the smallest) and the mean
    over countries, from ``(..., G)``. A resample missing a country gives NaN worst and mean (left out of the
    interval by :func:`percentile_interval`)."""
    worst = x.amax(-1) if metric == "loss" else x.amin(-1)
    return {**{g: x[..., i] for i, g in enumerate(countries)}, "worst": worst, "mean": x.mean(-1)}


# ------------------------------------------------------------------------------------------------ table and figure
def _cell(row: dict) -> str:
    """``value [lo, hi]``; losses (IPO's (h − 1/(2β))², in the hundreds or thousands for small β) without decimals."""
    return format_interval(row["value"], row["lo"], row["hi"], digits=0 if row["metric"] == "loss" else 3)


def table(summary: list[dict], header: str) -> str:
    """Markdown: per metric, one row per country (then worst and mean), one column per model and difference."""
    labels = list(dict.fromkeys(r["model"] for r in summary))
    lines = [header]
    for metric, title in METRICS.items():
        rows = [r for r in summary if r["metric"] == metric]
        if not rows:
            continue
        worst = "worst country (highest)" if metric == "loss" else "worst country (lowest)"
        lines += ["", f"**{title}** (value [95 % paired bootstrap interval])", ""]
        lines.append("| country | n | " + " | ".join(labels) + " |")
        lines.append("|---|---|" + "---|" * len(labels))
        for country in dict.fromkeys(r["country"] for r in rows):
            cells = {r["model"]: r for r in rows if r["country"] == country}
            name = {"worst": worst, "mean": "mean over countries"}.get(country, country)
            n = next(iter(cells.values()))["n"]
            lines.append(f"| {name} | {n} | " + " | ".join(_cell(cells[label]) for label in labels) + " |")
    return "\n".join(lines)


def figure(summary: list[dict], runs: list[dict], path: Path) -> None:
    """Per-country loss, reward accuracy and opinion alignment with their intervals; worst-country loss; the paired
    differences of the per-country loss; GR-IPO's group weights over steps (a line per country and fold, read from
    each fit's TensorBoard events: ``runs`` rows carry ``model``, ``fold`` and ``fit_dir``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in LABELS.values() if any(r["model"] == m for r in summary)]
    diffs = [f"{a} − {b}" for a, b in DIFFERENCES if a in models and b in models]
    countries = [c for c in dict.fromkeys(r["country"] for r in summary) if c not in ("worst", "mean")]
    short = [c.split(" (")[0] for c in countries]
    get = {(r["metric"], r["country"], r["model"]): r for r in summary}
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))

    def bars(ax, metric, labels, keys, title, colors):
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(keys))]
            rows = [get.get((metric, k, label)) for k in keys]
            ys = [r["value"] if r else float("nan") for r in rows]
            err = [[y - r["lo"] if r else 0 for y, r in zip(ys, rows, strict=True)],
                   [r["hi"] - y if r else 0 for y, r in zip(ys, rows, strict=True)]]  # fmt: skip
            ax.bar(xs, ys, width, yerr=err, capsize=2, color=colors[i], label=label)
        ax.set(xticks=range(len(keys)), title=title)
        ax.legend(fontsize=7)

    colors = [f"C{i}" for i in range(len(models))]
    bars(axes[0, 0], "loss", models, countries, "out-of-fold IPO loss per country (95 % CI)", colors)
    bars(axes[0, 1], "reward_acc", models, countries, "reward accuracy per country (ties ½)", colors)
    bars(axes[0, 2], "opinion_alignment", models, countries, "opinion alignment per country (1 − JSD)", colors)
    bars(axes[1, 0], "loss", models, ["worst", "mean"], "worst-country and mean loss", colors)
    bars(axes[1, 1], "loss", diffs, countries, "paired loss differences (< 0: GR-IPO lower)", ["C3", "C4"])
    for ax in (axes[0, 0], axes[0, 1], axes[0, 2], axes[1, 1]):
        ax.set_xticklabels(short, rotation=20)
    axes[1, 0].set_xticklabels(["worst country", "mean over countries"])
    axes[1, 1].axhline(0, color="k", lw=0.8)
    ax = axes[1, 2]
    styles = ["-", "--", ":", "-.", (0, (1, 3))]
    for run in (r for r in runs if r["model"] == "GR-IPO" and Path(r["fit_dir"]).is_dir()):
        scalars = read_scalars(Path(run["fit_dir"]))
        for j, c in enumerate(countries):
            values = scalars.get(group_weight_tag(c), [])
            style = styles[int(run["fold"]) % len(styles)]
            ax.plot([s for s, _ in values], [v for _, v in values], color=f"C{j}", ls=style)
    handles = [plt.Line2D([], [], color=f"C{j}", label=short[j]) for j in range(len(countries))]
    ax.legend(handles=handles, fontsize=7, title="line style: fold", title_fontsize=7)
    ax.set(title="GR-IPO group weights over steps, per fold", xlabel="optimizer step", ylabel="w_g")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(
    pairs: list[dict],
    items: list[dict],
    runs: list[dict],
    out: Path,
    n_boot: int = 2000,
    boot_seed: int = 0,
    n_data: int | None = None,
) -> str:
    """Writes the scores (``scores.csv``, ``alignment.csv``, ``runs.csv``), the results (``results.csv``,
    ``results.md``) and ``figure.png`` under ``out``; returns the markdown (to print). ``n_data``: the pairs the
    data makes, stated when one seed scored them."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(pairs, out / "scores.csv")
    write_csv(items, out / "alignment.csv")
    write_csv(runs, out / "runs.csv")
    summary = summarise(pairs, items, n_boot, boot_seed)
    write_csv(summary, out / "results.csv")
    models = list(dict.fromkeys(r["model"] for r in pairs))
    per_model = {m: sum(r["model"] == m for r in pairs) for m in models}
    seeds = sorted({int(r["seed"]) for r in pairs})
    folds = sorted({int(r["fold"]) for r in pairs})
    scored = next(iter(per_model.values()), 0)
    of = f" of the data's {n_data}" if n_data is not None and seeds == [seeds[0]] else ""
    header = (
        f"Out-of-fold scores: {scored} pairs{of} per method ({per_model}), each scored by a model that did not train "
        f"on its question; {len({r['question'] for r in pairs})} questions; folds {folds}, seed(s) {seeds}. "
        f"Intervals: 95 % percentile bootstrap over questions, {n_boot} resamples, the same resample for "
        "every method (paired)."
    )
    text = table(summary, header)
    (out / "results.md").write_text(text + "\n")
    figure(summary, runs, out / "figure.png")
    return text


def combine(dirs: Sequence[Path]) -> tuple[list[dict], list[dict], list[dict]]:
    """The pair scores, item alignments and runs of earlier reports' directories (``--from-results``), together."""
    pairs = [r for d in dirs for r in read_csv(d / "scores.csv")]
    items = [r for d in dirs for r in read_csv(d / "alignment.csv")]
    runs = [r for d in dirs if (d / "runs.csv").is_file() for r in read_csv(d / "runs.csv")]
    return pairs, items, runs
