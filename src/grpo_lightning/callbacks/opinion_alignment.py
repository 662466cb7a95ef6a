"""Per-country opinion alignment on the validation and test splits (a callback).

For every (question, country) of the split, one forward pass over the prompt gives the next-token logits at the
option letters; :func:`grpo_lightning.core.alignment.opinion_alignment` turns them and the country's survey shares
into 1 − Jensen–Shannon distance (base 2), and :class:`grpo_lightning.metrics.GroupOpinionAlignment` averages per
country. Logged as ``<stage>/opinion_alignment/<country>`` and ``<stage>/min_group_opinion_alignment``.

``grpo predict`` on GOQA data also writes each item's value, ``<log dir>/opinion_alignment_<split>.csv`` (columns
``source_row``, ``group``, ``opinion_alignment``), for statistics over questions (the cross-fitted GOQA experiment
bootstraps them).

Not in Ramesh et al. (2024), nor in TRL or torchtune: it is the metric of the Global Opinion QA paper (Durmus et al.
2023). It needs a data module with ``opinion_items(split)`` (``GlobalOpinionQADataModule``); with any other data it
does nothing. Items are evaluated once per (question, country), not once per pair.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch

from grpo_lightning.callbacks.log_dir import ReadsLogDir, log_dir_path
from grpo_lightning.core.alignment import opinion_alignment
from grpo_lightning.metrics import GroupOpinionAlignment

log = logging.getLogger(__name__)


def collate_opinion_items(items: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad the prompts, so the last position is every row's last prompt token.

    Returns ``input_ids``/``attention_mask``/``position_ids`` ``(B, T)`` (positions count real tokens only, so a
    padded row gets the positions of its unpadded run), ``letter_ids``/``shares``/``mask`` ``(B, L)`` padded to the
    most options, and ``group`` ``(B,)``.
    """
    width = max(len(it["prompt_ids"]) for it in items)
    n_letters = max(len(it["letter_ids"]) for it in items)
    b = len(items)
    input_ids = torch.full((b, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    letter_ids = torch.zeros((b, n_letters), dtype=torch.long)
    shares = torch.zeros((b, n_letters), dtype=torch.float64)
    mask = torch.zeros((b, n_letters), dtype=torch.bool)
    for i, it in enumerate(items):
        ids, n = it["prompt_ids"], len(it["letter_ids"])
        input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[i, width - len(ids) :] = 1
        letter_ids[i, :n] = torch.tensor(it["letter_ids"], dtype=torch.long)
        shares[i, :n] = torch.tensor(it["shares"], dtype=torch.float64)
        mask[i, :n] = True
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": position_ids,
        "letter_ids": letter_ids,
        "shares": shares,
        "mask": mask,
        "group": torch.tensor([it["group_id"] for it in items], dtype=torch.long),
    }


@torch.no_grad()
def letter_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits after the (left-padded) prompt at the option letters' token ids, ``(B, L)``."""
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
        logits_to_keep=1,
    ).logits[:, -1, :]
    return logits.gather(-1, batch["letter_ids"])


class OpinionAlignment(ReadsLogDir):
    """Logs per-country opinion alignment after each validation (in ``fit`` and ``validate``) and each test.

    With ``grpo predict`` it writes every item's alignment on the predicted split to
    ``<log dir>/opinion_alignment_<split>.csv`` (``predict_items``).

    Args:
        batch_size: prompts per forward pass.
        stages: which of ``val`` and ``test`` to measure.
        predict_items: after ``predict``, write the per-item file described above.
        validate_on_last_step: also validate after the step that reaches ``trainer.max_steps`` (Lightning
            otherwise skips validation when ``max_steps`` ends a run between two ``val_check_interval`` points, so a
            short run would log no ``val/`` value at all). Applies to every validation metric, not only this one.
    """

    def __init__(
        self,
        batch_size: int = 16,
        stages: tuple[str, ...] = ("val", "test"),
        validate_on_last_step: bool = True,
        predict_items: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"opinion alignment batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.predict_items = predict_items
        self.stages = tuple(stages)
        self.validate_on_last_step = validate_on_last_step
        self._warned = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning's fit loop validates after a batch when ``should_stop`` is set (and min_steps/min_epochs are met);
        # setting it on the step that reaches max_steps gives the run a final validation of its last weights.
        last = trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if self.validate_on_last_step and last and hasattr(trainer.datamodule, "opinion_items"):
            trainer.should_stop = True

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._measure(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._measure(trainer, pl_module, "test")

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if not (self.predict_items and hasattr(dm, "opinion_items") and hasattr(dm, "predict_split")):
            return
        if trainer.is_global_zero and hasattr(getattr(pl_module, "policy", None), "model"):
            path = log_dir_path(trainer) / f"opinion_alignment_{dm.predict_split}.csv"
            write_item_alignments(trainer, pl_module, dm.predict_split, path, self.batch_size)

    def compute(self, trainer, pl_module, stage: str) -> dict[str, torch.Tensor]:
        """The stage's per-country alignment of the current policy (items sharded over ranks, reduced)."""
        items = trainer.datamodule.opinion_items(stage)
        shard = items[trainer.global_rank :: trainer.world_size]
        metric = GroupOpinionAlignment(pl_module.group_names, stage).to(pl_module.device)
        if shard:
            groups = torch.tensor([it["group_id"] for it in shard], dtype=torch.long, device=pl_module.device)
            values = item_alignments(trainer, pl_module, shard, self.batch_size)
            metric.update(values.to(pl_module.device), groups)
        return metric.compute()

    def _measure(self, trainer, pl_module, stage: str) -> None:
        if stage not in self.stages:
            return
        if not hasattr(trainer.datamodule, "opinion_items") or not hasattr(getattr(pl_module, "policy", None), "model"):
            if not self._warned:
                log.info("opinion alignment: the data module has no opinion_items (not GOQA); nothing measured")
                self._warned = True
            return
        if not trainer.datamodule.opinion_items(stage):
            return
        values = self.compute(trainer, pl_module, stage)
        pl_module.log_dict(values, sync_dist=False)


def item_alignments(trainer, pl_module, items: list[dict[str, Any]], batch_size: int = 16) -> torch.Tensor:
    """1 − JSD of the current policy on each opinion item, ``(len(items),)`` float64 on the CPU (this process)."""
    model = pl_module.policy.model
    pad = trainer.datamodule.tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    out = []
    try:
        with trainer.precision_plugin.forward_context():
            for start in range(0, len(items), batch_size):
                batch = collate_opinion_items(items[start : start + batch_size], pad)
                batch = {k: v.to(pl_module.device) for k, v in batch.items()}
                out.append(opinion_alignment(letter_logits(model, batch), batch["shares"], batch["mask"]).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def write_item_alignments(trainer, pl_module, split: str, path: Path, batch_size: int = 16) -> Path:
    """Each (question, country) item of ``split`` with its alignment: a CSV with ``source_row``, ``group``,
    ``opinion_alignment`` (the per-item file of ``grpo predict`` and of the held-out scores)."""
    items = trainer.datamodule.opinion_items(split)
    values = item_alignments(trainer, pl_module, items, batch_size).tolist()
    names = pl_module.group_names
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source_row", "group", "opinion_alignment"])
        for item, value in zip(items, values, strict=True):
            writer.writerow([item["source_row"], names[item["group_id"]], value])
    log.info("wrote the opinion alignment of %d (question, country) items to %s", len(items), path)
    return path
