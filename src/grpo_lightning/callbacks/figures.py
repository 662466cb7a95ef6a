"""The group weights over training: a TensorBoard custom-scalar chart and a figure, read from the logged scalars."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from grpo_lightning.metrics import tags
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
        weight_tags = group_weight_tags(pl_module.group_names)
        # One writer takes one layout (SummaryWriter.add_custom_scalars); a second fit with the same logger has it.
        if str(log_dir) not in self._layout_written:
            # The chart's tags are regular expressions: escaped, so a group name is matched literally.
            layout = {"group weights": {"group weights": ["Multiline", [f"^{re.escape(t)}$" for t in weight_tags]]}}
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
        from grpo_lightning.analysis.runs import read_scalars

        weight_tags = dict(zip(group_names, group_weight_tags(group_names), strict=True))
        out: dict[str, list[tuple[int, float]]] = {g: [] for g in group_names}
        first = math.inf  # the first step of the later part: a predecessor's steps from there on were redone
        seen: set[Path] = set()  # a resumed_from that leads back to a dir read already ends the chain
        run_dir: Path | None = Path(log_dir).resolve()
        while run_dir is not None and run_dir not in seen:
            seen.add(run_dir)
            if any(run_dir.glob("events.out.tfevents.*")):
                scalars = read_scalars(run_dir)
                earliest = first
                for g, tag in weight_tags.items():
                    points = scalars.get(tag, [])
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
        logger.experiment.add_figure(tags.GROUP_WEIGHTS_FIGURE, fig, global_step=trainer.global_step)
        import matplotlib.pyplot as plt

        plt.close(fig)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._draw(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module)
