"""Callbacks: a figure of the group weights over training, predictions to CSV, the tokenizer and a
Hugging Face export, the per-group summary at the end of a run, and the progress bar. Checkpointing
(``RunCheckpoint``) lives in :mod:`grpo_lightning.checkpointing`."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, TQDMProgressBar

from grpo_lightning.log_dir import ReadsLogDir, log_dir_path, run_log_dir
from grpo_lightning.metrics.tags import group_weight_tags

log = logging.getLogger(__name__)


class GroupWeightFigure(Callback):
    """The group weights w_g over training in TensorBoard, drawn from the logged scalars
    ``train/group_weight/<group>`` alone (the callback keeps no history and nothing in checkpoints):

    * a custom-scalar chart "group weights" (TensorBoard's *Custom Scalars* tab), one line per
      group, written once at the start of ``fit``. TensorBoard draws it from the scalars of every
      run it shows, so a resumed run's new log version continues the curve of the run it resumed;
    * a figure (tag ``train/group_weights``) after every validation and at the end of training,
      read back from this run's event files and from those of the runs it resumed
      (``resumed_from`` in the log dir names the checkpoint each resumed from), so it covers
      the steps before the resume too.

    The curve has a point every ``trainer.log_every_n_steps`` steps, as the scalars. Without a
    TensorBoard logger (CSV logger or none) it does nothing.
    """

    RESUMED_FROM = "resumed_from"  # in the log dir: the checkpoint this run resumed

    def __init__(self) -> None:
        self._layout_written: set[str] = set()

    @staticmethod
    def _tensorboard(trainer):
        from lightning.pytorch.loggers import TensorBoardLogger

        return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        logger = self._tensorboard(trainer)
        if logger is None:
            log.info("no TensorBoard logger: no group-weight chart or figure")
            return
        log_dir = Path(logger.log_dir)
        tags = group_weight_tags(pl_module.group_names)
        # One writer takes one layout (SummaryWriter.add_custom_scalars); a second fit with the same logger has it.
        if str(log_dir) not in self._layout_written:
            # The chart's tags are regular expressions: escaped, so a group name is matched literally.
            layout = {"group weights": {"group weights": ["Multiline", [f"^{re.escape(t)}$" for t in tags]]}}
            logger.experiment.add_custom_scalars(layout)
            self._layout_written.add(str(log_dir))
        ckpt_path = trainer.ckpt_path
        # A resume of this log dir's own checkpoint keeps the link to the run it resumed before.
        if ckpt_path and Path(ckpt_path).is_file() and Path(ckpt_path).resolve().parent.parent != log_dir.resolve():
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / self.RESUMED_FROM).write_text(str(Path(ckpt_path).resolve()) + "\n")

    @classmethod
    def history(cls, log_dir: str | Path, group_names: list[str]) -> dict[str, list[tuple[int, float]]]:
        """Each group's logged weights ``[(step, w_g), ...]`` in ``log_dir`` and, for steps before its
        first, in the log dirs of the runs it resumed (a checkpoint in ``<log dir>/checkpoints/``)."""
        from grpo_lightning.runs import events

        tags = dict(zip(group_names, group_weight_tags(group_names), strict=True))
        out: dict[str, list[tuple[int, float]]] = {g: [] for g in group_names}
        first = math.inf  # the first step of the later part: a predecessor's steps from there on were redone
        seen: set[Path] = set()  # a resumed_from that leads back to a dir read already ends the chain
        run_dir: Path | None = Path(log_dir).resolve()
        while run_dir is not None and run_dir not in seen:
            seen.add(run_dir)
            if any(run_dir.glob("events.out.tfevents.*")):
                ea = events(run_dir)
                logged = set(ea.Tags()["scalars"])
                earliest = first
                for g, tag in tags.items():
                    points = [(e.step, e.value) for e in ea.Scalars(tag)] if tag in logged else []
                    out[g] = [p for p in points if p[0] < first] + out[g]
                    earliest = min([earliest, *(s for s, _ in points)])
                first = earliest
            marker = run_dir / cls.RESUMED_FROM
            run_dir = Path(marker.read_text().strip()).parent.parent if marker.is_file() else None
        return out

    @staticmethod
    def figure(history: dict[str, list[tuple[int, float]]]):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, points in history.items():
            ax.plot([s for s, _ in points], [w for _, w in points], label=name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("group weight $w_g$")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
        ax.set_title("Group weights over training")
        fig.tight_layout()
        return fig

    def _draw(self, trainer, pl_module) -> None:
        logger = self._tensorboard(trainer) if trainer.is_global_zero else None
        if logger is None:
            return
        logger.experiment.flush()  # the scalars logged so far, on disk for the read below
        history = self.history(logger.log_dir, pl_module.group_names)
        if not any(history.values()):
            return
        fig = self.figure(history)
        logger.experiment.add_figure("train/group_weights", fig, global_step=trainer.global_step)
        import matplotlib.pyplot as plt

        plt.close(fig)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._draw(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module)


class PredictionCSVWriter(ReadsLogDir, BasePredictionWriter):
    """Writes each predicted pair to a CSV file: where it came from, its group and prompt, its loss, implicit
    rewards and margin.

    Columns: ``index`` (the pair's number within the predicted split), ``source_file`` and ``source_row`` (the
    file and 1-based data row it was read from; for a GOQA pair its question's row; for generated or hub data the
    source's name and the row's number in it), ``group``, ``prompt`` (as tokenised, chat template included),
    ``loss``, ``chosen_reward``, ``rejected_reward``, ``margin``.

    Args:
        output_path: the CSV file; default ``<log dir>/predictions.csv``.
    """

    FIELDS = ("index", "source_file", "source_row", "group", "prompt", "loss", "chosen_reward", "rejected_reward")

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = []
        names = pl_module.group_names
        for batch in predictions:
            for i in range(len(batch["index"])):
                rows.append(
                    {
                        "index": int(batch["index"][i]),
                        "group": names[int(batch["group"][i])],
                        "loss": float(batch["loss"][i]),
                        "chosen_reward": float(batch["chosen_reward"][i]),
                        "rejected_reward": float(batch["rejected_reward"][i]),
                        "margin": float(batch["margin"][i]),
                    }
                )
        if trainer.world_size > 1:
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = sorted((r for part in gathered for r in part), key=lambda r: r["index"])
        if not trainer.is_global_zero:
            return
        _add_sources(rows, trainer.datamodule)
        path = Path(self.output_path) if self.output_path else log_dir_path(trainer) / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*self.FIELDS, "margin"])
            writer.writeheader()
            writer.writerows(rows)
        log.info("wrote %d predictions to %s", len(rows), path)


def _add_sources(rows: list[dict], dm, split: str | None = None) -> None:
    """Source file, row and prompt of each predicted pair, looked up by its ``index`` in ``split`` (default: the
    predicted split)."""
    split = split or getattr(dm, "predict_split", None)
    if split is None or not hasattr(dm, "dataset"):
        return
    ds = dm.dataset(split)
    columns = [c for c in ("source_file", "source_row", "prompt") if c in ds.column_names]
    values = {c: ds[c] for c in columns}
    position = {int(i): k for k, i in enumerate(ds["index"])}
    for row in rows:
        k = position.get(row["index"])
        row.update({c: values[c][k] for c in columns} if k is not None else {})


class SaveTokenizer(ReadsLogDir):
    """Saves the run's tokenizer next to its logs and checkpoints (``<log dir>/tokenizer``), so a
    run with a tokenizer trained in code is self-contained."""

    def on_fit_start(self, trainer, pl_module) -> None:
        tok = getattr(pl_module, "tokenizer", None)
        if run_log_dir(trainer) is None:  # no logger (e.g. fast_dev_run): nowhere that belongs to the run
            return
        if tok is not None and trainer.is_global_zero and hasattr(tok, "save_pretrained"):
            path = log_dir_path(trainer) / "tokenizer"
            tok.save_pretrained(str(path))
            log.info("saved the tokenizer to %s", path)


class HFExport(ReadsLogDir):
    """Saves the trained policy and its tokenizer as a Hugging Face directory at the end of
    training (off by default; the SFT stage turns it on). The preference stage then loads it as
    initial policy and reference with ``--model.policy.init_args.name_or_path <dir>``.

    Args:
        save_on_train_end: write the directory when ``fit`` ends.
        dirpath: where; default ``<log dir>/hf_model``.
    """

    def __init__(self, save_on_train_end: bool = False, dirpath: str | None = None) -> None:
        self.save_on_train_end = save_on_train_end
        self.dirpath = dirpath

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and self.save_on_train_end:
            from grpo_lightning.sharding import shards_parameters

            if shards_parameters(trainer.strategy):
                # rank 0 holds a shard of each weight: save_pretrained would write a broken model.
                raise ValueError(
                    "export.save_on_train_end is not supported with a strategy that shards the parameters (FSDP): "
                    "train this stage with DDP, or turn the export off"
                )

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.save_on_train_end or not trainer.is_global_zero:
            return
        if self.dirpath is None and run_log_dir(trainer) is None:
            log.warning("no logger and no export.dirpath: the Hugging Face export is skipped")
            return
        path = Path(self.dirpath) if self.dirpath else log_dir_path(trainer) / "hf_model"
        model = pl_module.policy.model
        if hasattr(model, "merge_and_unload"):  # a peft model: save the merged weights
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(str(path))
        tok = getattr(pl_module, "tokenizer", None)
        if tok is not None and hasattr(tok, "save_pretrained"):
            tok.save_pretrained(str(path))
        log.info("saved the policy as a Hugging Face model to %s", path)


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, refreshed less often when the output is not a terminal: a log file
    or CI gets a line every ``refresh_rate_not_tty`` steps rather than one per step.

    Args:
        refresh_rate: steps between refreshes on a terminal.
        refresh_rate_not_tty: steps between refreshes when stderr is not a terminal.
    """

    def __init__(self, refresh_rate: int = 1, refresh_rate_not_tty: int = 50) -> None:
        tty = sys.stderr.isatty()
        super().__init__(refresh_rate=refresh_rate if tty else refresh_rate_not_tty)


SUMMARY_COLUMNS = ("group", "pairs", "loss", "reward_acc", "logp_acc", "weight")


class GroupSummary(ReadsLogDir):
    """At the end of a run, one table of how every group did: after the last validation of
    ``fit``, and after ``validate`` and ``test``. One row per group with the pairs evaluated,
    mean loss, reward accuracy, log-prob accuracy and the current group weight w_g; the worst
    group (highest loss) is marked, and a group without pairs in the split says so.

    The table goes to the log (INFO); the same numbers go to ``<log dir>/summary_<split>.json``,
    which ``grpo-compare`` reads.

    Args:
        write_file: also write ``summary_<split>.json`` (needs a logger, for the log dir).
    """

    def __init__(self, write_file: bool = True) -> None:
        self.write_file = write_file
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._pending = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:  # during fit, each validation replaces the previous one
            self._pending = self.collect(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module) -> None:
        self._pending = self.collect(trainer, pl_module, "test")

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # The last hook of a run that finished (not of one that failed): the table comes after
        # the progress bar and Lightning's own results table, so it is the last thing shown.
        if self._pending is not None:
            self._report(trainer, self._pending)
        elif stage == "fit":
            log.info("no validation ran during fit: no per-group summary")
        self._pending = None

    @staticmethod
    def collect(trainer, pl_module, split: str) -> dict[str, Any]:
        """The split's per-group numbers from the metrics just logged (already reduced over ranks)."""
        metrics = trainer.callback_metrics
        value = lambda key: float(metrics[key]) if key in metrics else None  # noqa: E731
        weights = [float(w) for w in pl_module.group_weights().detach().cpu()]
        rows = []
        for g, name in enumerate(pl_module.group_names):
            pairs = value(f"{split}/pairs/{name}")
            present = pairs is not None and pairs > 0
            rows.append(
                {
                    "group": name,
                    "pairs": int(pairs) if pairs is not None else 0,
                    **{m: value(f"{split}/{m}/{name}") if present else None for m in SUMMARY_COLUMNS[2:5]},
                    "weight": weights[g],
                }
            )
        scored = [r for r in rows if r["loss"] is not None and math.isfinite(r["loss"])]
        worst = max(scored, key=lambda r: r["loss"]) if scored else None
        seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything
        fn = str(trainer.state.fn.value if trainer.state.fn else "")
        # validate/test/predict do not restore the trainer's step: the evaluated weights' step is the checkpoint's.
        step = trainer.global_step if fn == "fit" else getattr(pl_module, "checkpoint_step", None) or 0
        return {
            "split": split,
            "fn": fn,
            "step": int(step),
            "epoch": int(trainer.current_epoch),
            "seed": int(seed) if seed is not None else None,
            "loss_name": getattr(getattr(pl_module, "loss_fn", None), "name", None),
            "weighting": getattr(getattr(pl_module, "weighting", None), "name", None),
            "loss": value(f"{split}/loss"),
            "worst_group": worst["group"] if worst else None,
            "worst_group_loss": worst["loss"] if worst else None,
            "groups": rows,
        }

    def _report(self, trainer, summary: dict[str, Any]) -> None:
        if not trainer.is_global_zero:
            return
        log.info("%s", format_summary(summary))
        if self.write_file and run_log_dir(trainer) is not None:
            path = log_dir_path(trainer) / f"summary_{summary['split']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2) + "\n")
            log.info("wrote the %s summary to %s", summary["split"], path)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (one row per group, the worst marked)."""
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    w = max([5, *(len(r["group"]) for r in summary["groups"])])
    head = f"{'group':<{w}} {'pairs':>6} {'loss':>9} {'reward acc':>10} {'logp acc':>9} {'weight':>7}"
    title = f"{summary['split']} per-group summary ({summary['fn']}, step {summary['step']})"
    lines = [title, head, "-" * len(head)]
    for r in summary["groups"]:
        if not r["pairs"]:
            cells = f"{'no pairs':>9} {'':>10} {'':>9}"
        else:
            cells = f"{fmt(r['loss'], '9.4f')} {fmt(r['reward_acc'], '10.3f')} {fmt(r['logp_acc'], '9.3f')}"
        mark = "  <- worst" if r["group"] == summary["worst_group"] else ""
        lines.append(f"{r['group']:<{w}} {r['pairs']:>6d} {cells} {r['weight']:>7.3f}{mark}")
    lines.append(
        f"average loss {fmt(summary['loss'], '.4f')}; worst group {summary['worst_group'] or '-'}"
        f" (loss {fmt(summary['worst_group_loss'], '.4f')})"
    )
    return "\n".join(lines)
