"""The per-group summary of a finished run (summary.json and a printed table)."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

from grpo_lightning.callbacks.log_dir import ReadsLogDir, log_dir_path, run_log_dir
from grpo_lightning.metrics.tags import eval_group_tag, eval_tag

log = logging.getLogger(__name__)


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
            pairs = value(eval_group_tag(split, "pairs", name))
            present = pairs is not None and pairs > 0
            rows.append(
                {
                    "group": name,
                    "pairs": int(pairs) if pairs is not None else 0,
                    **{m: value(eval_group_tag(split, m, name)) if present else None for m in SUMMARY_COLUMNS[2:5]},
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
            "loss": value(eval_tag(split, "loss")),
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
