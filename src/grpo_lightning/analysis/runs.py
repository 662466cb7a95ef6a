"""Finished runs' final per-group metrics, read back for ``grpo-compare``: from the ``summary_<split>.json``
the ``summary`` callback writes, else from the last values in the run's TensorBoard event files."""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grpo_lightning.metrics.tags import eval_group_prefix, eval_group_tag, eval_tag, group_weight_tag

log = logging.getLogger(__name__)

METRICS = ("loss", "reward_acc", "logp_acc")


@dataclass
class Run:
    """One run's final per-group metrics on one split."""

    path: Path
    method: str
    seed: int | None
    loss: float | None  # over all pairs of the split
    groups: dict[str, dict] = field(default_factory=dict)  # group -> {"pairs", "loss", "reward_acc", "logp_acc"}

    def present(self) -> dict[str, dict]:
        # pairs is None for runs logged before <stage>/pairs/<group> existed: a logged loss counts.
        return {g: v for g, v in self.groups.items() if v.get("pairs") != 0 and v.get("loss") is not None}

    @property
    def fit_path(self) -> Path:
        """The log dir of the run that trained this run's model: for a ``grpo test/validate
        --ckpt_path <fit run>/checkpoints/<file>`` run, that fit run's dir (it holds the training
        scalars, e.g. the group weights over steps); else this run's own."""
        ckpt = _config_value(self.path, "ckpt_path")
        if isinstance(ckpt, str):
            fit = Path(ckpt).parent.parent
            if fit != self.path and any(fit.glob("events.out.tfevents.*")):
                return fit
        return self.path

    @property
    def worst_group_loss(self) -> float | None:
        losses = [v["loss"] for v in self.present().values()]
        return max(losses) if losses else None


# ----------------------------------------------------------------------------------------------
# Reading runs
# ----------------------------------------------------------------------------------------------


def _is_run_dir(path: Path) -> bool:
    return any(path.glob("summary_*.json")) or any(path.glob("events.out.tfevents.*"))


def find_run_dirs(path: Path) -> list[Path]:
    """``path`` itself if it is a run's log dir, else every run dir below it."""
    if _is_run_dir(path):
        return [path]
    found = {p.parent for pattern in ("summary_*.json", "events.out.tfevents.*") for p in path.rglob(pattern)}
    return sorted(found)


def _config_value(run_dir: Path, key: str):
    """A top-level value of the ``config.yaml`` LightningCLI writes next to the logs (None if absent)."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    try:
        return (yaml.safe_load(config.read_text()) or {}).get(key)
    except yaml.YAMLError:
        return None


def _seed_from_config(run_dir: Path) -> int | None:
    seed = _config_value(run_dir, "seed_everything")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _group_names(run_dir: Path) -> list[str] | None:
    hparams = run_dir / "hparams.yaml"  # the module's hyperparameters, group names included
    if not hparams.is_file():
        return None
    try:
        names = (yaml.safe_load(hparams.read_text()) or {}).get("group_names")
    except yaml.YAMLError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _from_summary(path: Path) -> tuple[float | None, dict[str, dict], int | None]:
    summary = json.loads(path.read_text())
    groups = {r["group"]: {k: r.get(k) for k in ("pairs", *METRICS, "weight")} for r in summary["groups"]}
    return summary.get("loss"), groups, summary.get("seed")


def _drop_no_path_found(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("No path found after")


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run directory (all its event files): tag → ``[(step, value), ...]`` in the order
    logged. The one reader of event files: ``grpo-compare`` (runs without a summary file, the weights panel), the
    group-weight figure (``callbacks/figures.py``) and the GOQA report (``analysis/goqa.py``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tb_logging

    # TensorBoard's directory watcher says at INFO that it read to the end of the folder, at every read (every
    # validation, for the group-weight figure).
    if _drop_no_path_found not in tb_logging.get_logger().filters:
        tb_logging.get_logger().addFilter(_drop_no_path_found)

    # Images and histograms (the group-weight figure) are not read: one of each is kept, all scalars.
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 1, "histograms": 1})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def _from_events(run_dir: Path, stage: str) -> tuple[float | None, dict[str, dict]] | None:
    """The last logged value of each ``<stage>/<metric>/<group>`` (runs without a summary file)."""
    scalars = read_scalars(run_dir)
    if eval_tag(stage, "loss") not in scalars:
        return None
    last = lambda tag: scalars[tag][-1][1] if tag in scalars else None  # noqa: E731
    prefix = eval_group_prefix(stage, "loss")
    names = _group_names(run_dir) or sorted(t[len(prefix) :] for t in scalars if t.startswith(prefix))
    groups = {}
    for g in names:
        pairs = last(eval_group_tag(stage, "pairs", g))  # absent in runs from before it was logged
        values = {m: last(eval_group_tag(stage, m, g)) for m in METRICS}
        values["weight"] = last(group_weight_tag(g))  # the last training step's w_g
        if pairs is None:
            pairs = None if values["loss"] is not None else 0
        groups[g] = {"pairs": None if pairs is None else int(pairs), **values}
    return last(eval_tag(stage, "loss")), groups


def read_run(run_dir: Path, stage: str, method: str) -> Run | None:
    summary = run_dir / f"summary_{stage}.json"
    if summary.is_file():
        loss, groups, seed = _from_summary(summary)
    else:
        found = _from_events(run_dir, stage) if any(run_dir.glob("events.out.tfevents.*")) else None
        if found is None:
            return None
        (loss, groups), seed = found, None
    if seed is None:
        seed = _seed_from_config(run_dir)
    return Run(run_dir, method, seed, loss, groups)


def method_of(run_dir: Path, given: Path, label_by: str, patterns: list[tuple[str, str]]) -> str:
    """``--method NAME=GLOB`` first (matched against the run dir's path), then ``--label-by``:
    ``name`` is the logger name (the parent of ``version_N``), ``dir`` the path as given."""
    for name, pattern in patterns:
        if fnmatch.fnmatch(run_dir.as_posix(), pattern):
            return name
    return run_dir.parent.name if label_by == "name" else str(given)


def resumed_run(run_dir: Path) -> Path | None:
    """The log dir of the run ``run_dir`` resumed (``fit --ckpt_path <that dir>/checkpoints/<file>``), or None.

    Read from ``resumed_from`` (written by the group-weight figure at a resume) or, for a run with checkpoints of
    its own (a fit, not a ``test``/``validate`` of a checkpoint), the ``ckpt_path`` of its ``config.yaml``."""
    marker = run_dir / "resumed_from"
    if marker.is_file():
        ckpt = marker.read_text().strip()
    elif (run_dir / "checkpoints").is_dir():
        ckpt = _config_value(run_dir, "ckpt_path")
    else:
        ckpt = None
    if not isinstance(ckpt, str) or not ckpt or Path(ckpt).parent.name != "checkpoints":
        return None
    before = Path(ckpt).parent.parent.resolve()
    return before if before != run_dir.resolve() else None


def drop_resumed(runs: list[Run]) -> list[Run]:
    """One run per chain of resumptions: an interrupted run and the versions that resumed it are one training
    run, represented by the latest version with metrics (its final metrics are the run's). Counting each version
    would weight an interrupted run twice, with the early version's metrics of a half-trained model."""
    by_dir = {r.path.resolve(): r for r in runs}
    superseded: dict[Path, Path] = {}
    for run in runs:
        seen, before = {run.path.resolve()}, resumed_run(run.path)
        while before is not None and before not in seen:
            seen.add(before)
            superseded.setdefault(before, run.path)
            before = resumed_run(before)
    for path in superseded.keys() & by_dir.keys():
        log.info("%s was resumed (by %s): counted as one run with it", by_dir[path].path, superseded[path])
    return [r for r in runs if r.path.resolve() not in superseded]


def collect_runs(paths: list[Path], stage: str, label_by: str, patterns: list[tuple[str, str]]) -> list[Run]:
    """The runs under ``paths`` with ``stage`` metrics, one per training run (``drop_resumed``)."""
    return drop_resumed(_collect_versions(paths, stage, label_by, patterns))


def _collect_versions(paths: list[Path], stage: str, label_by: str, patterns: list[tuple[str, str]]) -> list[Run]:
    runs = []
    for given in paths:
        dirs = find_run_dirs(given)
        if not dirs:
            log.warning("no runs (summary_*.json or TensorBoard event files) under %s", given)
        for run_dir in dirs:
            run = read_run(run_dir, stage, method_of(run_dir, given, label_by, patterns))
            if run is None:
                log.info("skipping %s: no %s metrics", run_dir, stage)
            else:
                runs.append(run)
    return runs
