"""What a run leaves for the next stage: its tokenizer (:class:`SaveTokenizer`), the policy as a Hugging Face
directory (:class:`HFExport`, merged weights) and a LoRA policy's adapter alone (:class:`AdapterExport`).

The SFT stage's :class:`HFExport` writes the *merged* model (``hf_model``), which the
preference stage loads as base for a fresh adapter. The authors' code (rsshyam/GRPO) instead keeps training the SFT
adapter; this callback writes it to ``<log dir>/hf_adapter`` (peft's ``save_pretrained``: ``adapter_config.json``
and ``adapter_model.safetensors``) for ``--model.policy.init_args.adapter <that dir>``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from grpo_lightning.callbacks.log_dir import ReadsLogDir, log_dir_path, run_log_dir

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
            from grpo_lightning.training.sharding import shards_parameters

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
