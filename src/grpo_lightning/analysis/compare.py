"""`grpo-compare`: per-group and worst-group results over seeds, per method, as mean ± s.e.

Reads finished runs (``summary_<split>.json`` written by the ``summary`` callback, else the last
values in the run's TensorBoard event files), or launches ``grpo fit`` for each config × seed
first, one run after another, each in its own log dir::

    grpo-compare logs/default_ipo logs/default_gripo --figure compare.png
    grpo-compare --config configs/experiment/default_ipo.yaml --config configs/experiment/default_gripo.yaml \\
        --seeds 0,1,2,3,4 -- --trainer.max_epochs 4

s.e. is the sample standard deviation (ddof=1) over runs divided by √n.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from grpo_lightning.analysis.launch import Launcher, LaunchError
from grpo_lightning.analysis.runs import Run, collect_runs, method_of, read_run, read_scalars
from grpo_lightning.analysis.stats import format_mean_se_of, mean_se_values
from grpo_lightning.metrics.tags import GROUP_WEIGHT_PREFIX

log = logging.getLogger(__name__)

STAGES = ("val", "test")


# ----------------------------------------------------------------------------------------------
# Statistics and tables
# ----------------------------------------------------------------------------------------------


def by_method(runs: list[Run]) -> dict[str, list[Run]]:
    methods: dict[str, list[Run]] = {}
    for run in runs:
        methods.setdefault(run.method, []).append(run)
    return methods


def _group_order(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(g for run in runs for g in run.groups))


def table_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """The comparison as a header and rows of cells (one column per method)."""
    methods = by_method(runs)
    header = ["", *methods]
    rows = [
        ["runs", *(str(len(rs)) for rs in methods.values())],
        ["seeds", *(",".join(str(r.seed) for r in rs if r.seed is not None) or "-" for rs in methods.values())],
    ]
    groups = _group_order(runs)
    for metric, title in (("loss", "loss"), ("reward_acc", "reward acc"), ("weight", "weight")):
        per_method = []
        for rs in methods.values():
            cells = {}
            for g in groups:
                # None: the group has pairs (or, for weights, exists) but the value was not logged.
                source = [r.groups if metric == "weight" else r.present() for r in rs]
                cells[g] = [s[g].get(metric) for s in source if g in s]
            per_method.append(cells)
        if metric == "weight" and not any(v is not None for cells in per_method for vs in cells.values() for v in vs):
            continue  # no weights logged (runs read from event files without training scalars)
        for g in groups:
            row = [f"{title} {g}"]
            for rs, cells in zip(methods.values(), per_method, strict=True):
                found = [v for v in cells[g] if v is not None]
                text = format_mean_se_of(found, of=len(rs)) if found or not cells[g] else "-"  # "-": not logged
                if metric == "loss" and found and g == _worst(cells):
                    text += " <- worst"  # the group with the highest mean loss of this method
                row.append(text)
            rows.append(row)
        if metric == "loss":
            for label, get in (("worst-group loss", lambda r: r.worst_group_loss), ("average loss", lambda r: r.loss)):
                cells = [
                    format_mean_se_of([v for r in rs if (v := get(r)) is not None], of=len(rs))
                    for rs in methods.values()
                ]
                rows.append([label, *cells])
    return header, rows


def _worst(cells: dict[str, list[float]]) -> str | None:
    found = {g: [x for x in v if x is not None] for g, v in cells.items()}
    means = {g: sum(v) / len(v) for g, v in found.items() if v}
    return max(means, key=means.get) if means else None


def _worst_per_seed(rs: list[Run]) -> dict[int, float]:
    values: dict[int, list[float]] = {}
    for r in rs:
        if r.seed is not None and r.worst_group_loss is not None:
            values.setdefault(r.seed, []).append(r.worst_group_loss)
    return {s: sum(v) / len(v) for s, v in values.items()}  # repeated seeds: their mean


def paired_differences(runs: list[Run]) -> list[str]:
    """With two or more methods sharing seeds: worst-group loss of the *last* method (e.g. the
    group-robust one, listed after its baselines) minus each other method's, paired by seed
    (mean ± s.e.), and on how many seeds the last is lower. One line per other method."""
    methods = by_method(runs)
    if len(methods) < 2:
        return []
    *others, (name_b, runs_b) = methods.items()
    b = _worst_per_seed(runs_b)
    lines = []
    for name_a, runs_a in others:
        a = _worst_per_seed(runs_a)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        diffs = [b[s] - a[s] for s in seeds]
        wins = sum(d < 0 for d in diffs)
        lines.append(
            f"paired worst-group loss, {name_b} − {name_a} over {len(seeds)} shared seed(s): "
            f"{format_mean_se_of(diffs)}; {name_b} lower on {wins}/{len(seeds)}"
        )
    return lines


def format_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def format_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *("---:" for _ in header[1:])]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(runs: list[Run], stage: str, markdown: bool = False) -> str:
    header, rows = table_rows(runs)
    body = format_markdown(header, rows) if markdown else format_text(header, rows)
    title = f"{stage} split, mean ± s.e. over runs (s.e. = sample std / √n)"
    parts = [title, "", body]
    diffs = paired_differences(runs)
    if diffs:
        parts += ["", *diffs]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------------


def _weight_history(run: Run) -> dict[str, list[tuple[int, float]]]:
    """``train/group_weight/<group>`` over steps, from the event files of the run that trained
    the weights (for a ``test`` run, the run whose checkpoint it tested: :attr:`Run.fit_path`)."""
    path = run.fit_path
    if not any(path.glob("events.out.tfevents.*")):
        return {}
    scalars = read_scalars(path)
    return {t[len(GROUP_WEIGHT_PREFIX) :]: v for t, v in scalars.items() if t.startswith(GROUP_WEIGHT_PREFIX)}


def draw_figure(runs: list[Run], path: Path, stage: str) -> None:
    """Per-group loss per method (bars, s.e. error bars) and, where the weights moved, each such
    method's group weights over steps (mean over its runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = by_method(runs)
    groups = _group_order(runs)
    histories = {}
    for name, rs in methods.items():
        per_run = [h for r in rs if (h := _weight_history(r))]
        moved = any(max(v for _, v in s) - min(v for _, v in s) > 1e-6 for h in per_run for s in h.values() if s)
        if moved:
            histories[name] = per_run
    fig, axes = plt.subplots(1, 1 + len(histories), figsize=(6 + 4.5 * len(histories), 4), squeeze=False)
    ax = axes[0][0]
    labels = [*groups, "worst group"]
    width = 0.8 / max(len(methods), 1)
    for i, (name, rs) in enumerate(methods.items()):
        means, ses = [], []
        for g in labels:
            if g == "worst group":
                values = [v for r in rs if (v := r.worst_group_loss) is not None]
            else:
                values = [r.present()[g]["loss"] for r in rs if g in r.present()]
            m, se = mean_se_values(values) if values else (float("nan"), None)
            means.append(m)
            ses.append(se or 0.0)
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(labels))]
        # One run per method: no spread over runs to draw (the bars are then single values).
        yerr = ses if any(ses) else None
        ax.bar(xs, means, width, yerr=yerr, capsize=3, label=f"{name} (n={len(rs)})", color=f"C{i}")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel(f"{stage} loss (mean ± s.e. over runs)" if len(runs) > len(methods) else f"{stage} loss")
    ax.set_title(f"{stage} loss per group")
    ax.legend(fontsize="small")
    for ax, (name, per_run) in zip(axes[0][1:], histories.items(), strict=True):
        for k, g in enumerate(groups):
            series = [h[g] for h in per_run if g in h]
            if not series:
                continue
            n = min(len(s) for s in series)  # runs of one method log the same steps
            steps = [step for step, _ in series[0][:n]]
            mean = [sum(s[t][1] for s in series) / len(series) for t in range(n)]
            ax.plot(steps, mean, label=g, color=f"C{k}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("group weight $w_g$")
        ax.set_title(f"{name}: group weights (mean of {len(per_run)} run(s))")
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote the figure to %s", path)


# ----------------------------------------------------------------------------------------------
# Launching runs
# ----------------------------------------------------------------------------------------------


def _labels(configs: list[str]) -> list[str]:
    """A method name per config: its file name, numbered when two configs share one."""
    stems = [Path(c).stem for c in configs]
    return [s if stems.count(s) == 1 else f"{s}_{i}" for i, s in enumerate(stems)]


def launch(configs: list[str], seeds: list[int], log_dir: Path, stage: str, extra: list[str]) -> list[tuple[Path, str]]:
    """``grpo fit`` (and ``grpo test`` from its last checkpoint for ``--stage test``) for each
    config × seed, one after another; each run logs to ``<log_dir>/<config name>/seed_<seed>``.
    A run whose summary is already there is reused. Returns (run dir, method) pairs."""
    launcher = Launcher()  # the children run the same grpo_lightning as this process (a checkout included)
    todo = [(config, label, seed) for config, label in zip(configs, _labels(configs), strict=True) for seed in seeds]
    out = []
    for i, (config, label, seed) in enumerate(todo, 1):
        version = f"seed_{seed}" if stage == "val" else f"seed_{seed}_test"
        run_dir = log_dir / label / version
        out.append((run_dir, label))
        if (run_dir / f"summary_{stage}.json").is_file():
            log.info("[%d/%d] %s seed %d: reusing %s", i, len(todo), label, seed, run_dir)
            continue
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists without summary_{stage}.json (an interrupted run?): remove it")
        common = [
            "--config",
            config,
            "--seed_everything",
            str(seed),
            "--trainer.logger.init_args.save_dir",
            str(log_dir),
            "--trainer.logger.init_args.name",
            label,
        ]
        fit_dir = log_dir / label / f"seed_{seed}"
        commands = []
        if not (fit_dir / "checkpoints" / "last.ckpt").is_file() or stage == "val":
            commands.append(["fit", *common, "--trainer.logger.init_args.version", f"seed_{seed}", *extra])
        if stage == "test":
            ckpt = str(fit_dir / "checkpoints" / "last.ckpt")
            commands.append(
                ["test", *common, "--trainer.logger.init_args.version", version, "--ckpt_path", ckpt, *extra]
            )
        for subcommand, *args in commands:
            log.info("[%d/%d] %s seed %d: grpo %s %s", i, len(todo), label, seed, subcommand, " ".join(args))
            # The runs' own output goes to stderr, so stdout holds only the comparison.
            try:
                launcher.run(subcommand, args)
            except LaunchError as e:
                raise SystemExit(f"{e} for {config} seed {seed}") from e
    return out


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _method_pattern(text: str) -> tuple[str, str]:
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise argparse.ArgumentTypeError(f"--method takes NAME=GLOB, got {text!r}")
    return name, pattern


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-compare",
        description="Per-group and worst-group metrics over seeds, per method (mean ± s.e.), from finished runs "
        "or from config × seed runs it launches. Arguments after `--` go to every launched `grpo fit`.",
    )
    p.add_argument("runs", nargs="*", type=Path, help="run log dirs, or dirs holding them (e.g. logs/default_ipo)")
    p.add_argument("--stage", default="val", choices=STAGES, help="which split's metrics (default val)")
    p.add_argument("--label-by", default="name", choices=["name", "dir"], help="method = logger name or given dir")
    p.add_argument("--method", action="append", default=[], type=_method_pattern, metavar="NAME=GLOB")
    p.add_argument("--config", action="append", default=[], help="launch `grpo fit` with this config (repeatable)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="seeds for --config, e.g. 0,1,2,3,4")
    p.add_argument("--log-dir", type=Path, default=Path("logs/compare"), help="where launched runs log")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--figure", "--out", dest="figure", type=Path, help="also draw the comparison to this file")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # one INFO line per event file read
    if not args.runs and not args.config:
        raise SystemExit("grpo-compare: give run dirs, or --config (with --seeds) to launch runs")
    if extra and not args.config:
        raise SystemExit("grpo-compare: arguments after `--` are for launched runs; give --config")
    runs = collect_runs(args.runs, args.stage, args.label_by, args.method)
    for run_dir, label in launch(args.config, args.seeds, args.log_dir, args.stage, extra) if args.config else []:
        run = read_run(run_dir, args.stage, method_of(run_dir, run_dir, "name", args.method) if args.method else label)
        if run is None:
            raise SystemExit(f"{run_dir}: no {args.stage} metrics after the run")
        runs.append(run)
    if not runs:
        raise SystemExit(f"grpo-compare: no runs with {args.stage} metrics")
    # The table is the command's output (stdout); progress goes to the log.
    sys.stdout.write(report(runs, args.stage, markdown=args.markdown) + "\n")
    if args.figure:
        draw_figure(runs, args.figure, args.stage)


if __name__ == "__main__":
    main()
