"""Saves a LoRA policy's adapter alone at the end of training, so the next stage can keep training it.

The SFT stage's :class:`grpo_lightning.callbacks.HFExport` writes the *merged* model (``hf_model``), which the
preference stage loads as base for a fresh adapter. The authors' code (rsshyam/GRPO) instead keeps training the SFT
adapter; this callback writes it to ``<log dir>/hf_adapter`` (peft's ``save_pretrained``: ``adapter_config.json``
and ``adapter_model.safetensors``) for ``--model.policy.init_args.adapter <that dir>``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from grpo_lightning.log_dir import ReadsLogDir, run_log_dir

log = logging.getLogger(__name__)


class AdapterExport(ReadsLogDir):
    """Args:
    dirpath: where; default ``<log dir>/hf_adapter``.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module) -> None:
        model = pl_module.policy.model
        if not trainer.is_global_zero or not hasattr(model, "peft_config"):
            return
        if self.dirpath is None and run_log_dir(trainer) is None:
            log.warning("no logger and no dirpath: the adapter export is skipped")
            return
        path = Path(self.dirpath) if self.dirpath else Path(run_log_dir(trainer)) / "hf_adapter"
        model.save_pretrained(str(path))
        log.info("saved the LoRA adapter to %s", path)
