"""``PreferenceDataModule``: rows {prompt, chosen, rejected, group} → tokenised, group-labelled batches."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import datasets
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from grpo_lightning.data.io import load_files, load_hub, rename_columns
from grpo_lightning.data.loaders import EpochShuffle, LengthGroupedShuffle, training_loader
from grpo_lightning.data.preparation import SPLITS, prepare
from grpo_lightning.data.sources.generated import GeneratedOpinions
from grpo_lightning.data.splits import fingerprint_changes
from grpo_lightning.data.tokenization import PAIR_COLUMNS, REF_COLUMNS, PairCollator

log = logging.getLogger(__name__)


def source_settings(
    path: str | list[str] | None, hub_id: str | None, hub_split: str, generated: GeneratedOpinions | None
) -> dict[str, Any]:
    """What names the data of a run (kept in its checkpoints; a resume from ``last`` compares it):
    the resolved file path(s), the hub id and split, or the settings of the generated data."""
    if path is not None:
        paths = [path] if isinstance(path, str) else list(path)
        return {"path": [str(Path(p).resolve()) for p in paths]}
    if hub_id is not None:
        return {"hub_id": hub_id, "hub_split": hub_split}
    return {"generated": asdict(generated or GeneratedOpinions())}


class PreferenceDataModule(L.LightningDataModule):
    """Group-labelled preference pairs for group-robust preference optimisation.

    The data is prepared when first needed (at the latest in ``setup``); the CLI links
    :attr:`group_names`, :attr:`train_group_counts` (N_g) and :attr:`tokenizer` into the model.

    Args:
        path: local jsonl/json/csv/parquet file(s) or a directory of them.
        hub_id: a Hugging Face dataset id (used when ``path`` is not given).
        hub_split: the split of ``hub_id`` to read; this module makes its own train/val/test.
        generated: settings of the embedded default data, used when neither ``path`` nor
            ``hub_id`` is given.
        columns: map of ``prompt/chosen/rejected/group`` to the column names in your data.
        groups: the groups to train on, in this order (ids 0..K-1). ``None``: every group in the
            data, sorted by name. A listed group absent from the data is an error; rows of
            unlisted groups are skipped and counted. Labels in the data lose surrounding whitespace.
        tokenizer: a tokenizer hub id or directory, or a run's ``.ckpt`` file (the tokenizer saved
            in it); ``None`` trains a byte-level BPE tokeniser on the training texts (for a fresh
            ``fit`` of the tiny model; the CLI sets the checkpoint's tokenizer with ``--ckpt_path``
            and a pretrained policy's own otherwise) and saves it with the run.
        tokenizer_vocab_size: vocabulary size of that trained tokeniser.
        tokenizer_gguf_file: read the tokenizer from this GGUF file: a file name inside the
            ``tokenizer`` directory, or a full path when ``tokenizer`` is ``None``.
        max_length: most tokens of prompt + completion.
        max_prompt_length: most prompt tokens (longer prompts keep their end); < ``max_length``.
        batch_size: pairs per micro-batch per device.
        eval_batch_size: pairs per validation/test/predict batch (default ``batch_size``).
        accumulate_grad_batches: micro-batches per optimizer step. Set it on the model
            (``--model.accumulate_grad_batches``); the CLI copies it here so the training loader
            yields one optimizer step's pairs per batch.
        split_fractions: train/val/test fractions; a pair's split is a keyed hash of its prompt with
            ``seed`` (``splits.stratified_split``), so it does not move when other rows change; not used when the rows of
            :meth:`load_rows` carry a ``split`` column (``train``/``val``/``test``), whose splits are
            used as given (the generated default does; a ``load_rows`` override may; files are
            read for the four pair columns only).
        seed: the key of the split's hash.
        num_workers: DataLoader workers.
        predict_split: the split ``predict`` scores.
        chat_template: wrap each prompt in the tokenizer's chat template as one user turn with the
            assistant's generation prompt after it (for instruct models), before tokenising; the
            templated prompt is what every split, the opinion-alignment metric and ``predict`` see.
            Needs a pretrained tokenizer that has a chat template.
        group_by_length: training batches of pairs of similar length (as transformers'
            ``group_by_length``): each window of 50 batches of the seeded shuffle is sorted by the
            pair's longer sequence, so batches pad less; every pair is still seen once per epoch,
            the order is deterministic and resumes mid-epoch. Evaluation order is unchanged.
        merge_group_case: labels that differ only in case (``north``, ``NORTH``) are always named in
            a warning; ``False`` keeps them as separate groups, ``True`` merges them into one,
            spelled as in ``groups`` or else as most of its rows spell it.
    """

    def __init__(
        self,
        path: str | list[str] | None = None,
        hub_id: str | None = None,
        hub_split: str = "train",
        generated: GeneratedOpinions | None = None,
        columns: dict[str, str] | None = None,
        groups: list[str] | None = None,
        tokenizer: str | None = None,
        tokenizer_vocab_size: int = 512,
        tokenizer_gguf_file: str | None = None,
        max_length: int = 256,
        max_prompt_length: int = 192,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        accumulate_grad_batches: int = 1,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        num_workers: int = 0,
        predict_split: Literal["train", "val", "test"] = "test",
        merge_group_case: bool = False,
        group_by_length: bool = False,
        chat_template: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(
                f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}"
            )
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        if not 0 < max_prompt_length < max_length:
            raise ValueError(
                f"data.max_prompt_length must lie in (0, data.max_length={max_length}), got {max_prompt_length}"
            )
        if (
            len(split_fractions) != 3
            or any(not (math.isfinite(f) and f >= 0) for f in split_fractions)
            or abs(sum(split_fractions) - 1) > 1e-6
        ):
            raise ValueError(f"data.split_fractions must be 3 numbers >= 0 summing to 1, got {split_fractions}")
        if split_fractions[0] <= 0:
            raise ValueError("data.split_fractions: the training fraction must be > 0")
        if predict_split not in SPLITS:
            raise ValueError(f"data.predict_split must be one of {SPLITS}, got {predict_split!r}")
        if groups is not None and len(set(groups)) != len(groups):
            raise ValueError(f"data.groups lists a group twice: {groups}")
        if groups is not None and not groups:
            raise ValueError("data.groups is empty; leave it unset to use every group in the data")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if tokenizer is None and tokenizer_vocab_size < 258:
            raise ValueError(
                f"data.tokenizer_vocab_size must be >= 258 (256 bytes + <pad> + <eos>), got {tokenizer_vocab_size}"
            )
        if chat_template and tokenizer is None and tokenizer_gguf_file is None:
            raise ValueError("data.chat_template needs a pretrained tokenizer with a chat template (data.tokenizer)")
        if path is not None and hub_id is not None:
            raise ValueError("give data.path or data.hub_id, not both")
        self.path, self.hub_id, self.hub_split = path, hub_id, hub_split
        self.generated = generated or GeneratedOpinions()
        self.columns, self.groups, self.merge_group_case = columns, groups, merge_group_case
        self.tokenizer_name, self.tokenizer_vocab_size = tokenizer, tokenizer_vocab_size
        self.tokenizer_gguf_file = tokenizer_gguf_file
        self.max_length, self.max_prompt_length = max_length, max_prompt_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.accumulate_grad_batches = accumulate_grad_batches
        self.split_fractions, self.seed, self.num_workers = tuple(split_fractions), seed, num_workers
        self.predict_split, self.group_by_length, self.chat_template = predict_split, group_by_length, chat_template
        self.skipped: Counter = Counter()
        self.source_skipped: Counter = Counter()  # rows a ``load_rows`` override skipped itself
        self.rows_in = 0

    # ---------------------------------------------------------------- sources
    @property
    def source_name(self) -> str:
        if self.path is not None:
            return str(self.path)
        return self.hub_id or "generated group opinions"

    def load_rows(self) -> datasets.Dataset:
        """Raw rows with columns prompt, chosen, rejected, group (override to add a source)."""
        if self.path is not None:
            ds = load_files(self.path, self.columns)
        elif self.hub_id is not None:
            ds = load_hub(self.hub_id, self.hub_split)
        else:
            ds = datasets.Dataset.from_dict(self.generated.rows())
        return rename_columns(ds, self.columns, self.source_name)

    # ---------------------------------------------------------------- preparation
    @cached_property
    def _prepared(self) -> dict[str, Any]:
        """Load, clean, split and tokenise once (:func:`~grpo_lightning.data.preparation.prepare`); the counts of
        rows in and skipped per reason are kept in :attr:`rows_in` and :attr:`skipped`."""
        return prepare(self)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        # Saved in every checkpoint, so resuming from ``last`` can refuse another run's data, and a resume or
        # re-evaluation of the same source with other rows (a file edited in place) can say how many differ.
        return {
            "source": source_settings(self.path, self.hub_id, self.hub_split, self.generated),
            "fingerprint": dict(self._prepared["fingerprint"]),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Compares the checkpoint's data with this data (Lightning calls it when it restores a checkpoint, in
        ``fit``, ``validate``, ``test`` and ``predict``): ``fit`` on other data is refused (resumed, the run would
        train on other pairs and other splits than the ones it started with); an evaluation is allowed with a
        warning that names the number of changed pairs and of evaluated pairs the checkpoint was trained on."""
        saved = state_dict.get("fingerprint")
        if saved is None:  # checkpoints from before fingerprints
            return
        changes = fingerprint_changes(saved, self._prepared["fingerprint"])
        if not any(changes.values()):
            return
        what = (
            f"{self.source_name}: not the data the checkpoint was trained on: {changes['removed']} of its pairs "
            f"are not in this data and {changes['added']} pairs are new (an edited pair counts in both)"
        )
        trainer = getattr(self, "trainer", None)
        fn = str(trainer.state.fn.value) if trainer is not None and trainer.state.fn else ""
        if fn == "fit":
            raise ValueError(
                f"{what}; resuming would train on other pairs: resume with the run's data, or start a new run "
                "without --ckpt_path"
            )
        if trainer is None or trainer.is_global_zero:
            seen = changes["seen_in_training"]
            log.warning(
                "%s; %s of this data's val/test pairs were training pairs of the checkpoint",
                what,
                seen if seen else "none",
            )

    # ---------------------------------------------------------------- linked into the model
    @property
    def group_names(self) -> list[str]:
        return list(self._prepared["names"])

    @property
    def train_group_counts(self) -> list[int]:
        return list(self._prepared["counts"])

    @property
    def tokenizer(self):
        return self._prepared["tokenizer"]

    def dataset(self, split: str) -> datasets.Dataset:
        return self._prepared["splits"][split]

    def set_reference_logps(self, split: str, logps: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Give the tokenised ``split`` the reference log-probs of its pairs, ``(chosen, rejected)`` with one value
        per row in row order, as the float32 columns ``ref_chosen_logps``/``ref_rejected_logps`` that loaders made
        afterwards select and the collator batches; ``None`` removes them. The one way in for the module's reference
        cache (:class:`~grpo_lightning.training.reference.ReferenceCache`): this module keeps owning its splits.
        Columns of an earlier reference are replaced, so a split never carries two references' values."""
        dataset = self.dataset(split)
        carried = [c for c in REF_COLUMNS if c in dataset.column_names]
        if logps is None and not carried:
            return
        dataset = dataset.remove_columns(carried)
        if logps is not None:
            if any(len(values) != len(dataset) for values in logps):
                raise ValueError(f"{'/'.join(str(len(v)) for v in logps)} reference log-probs for {len(dataset)} rows")
            # float32 arrays become float32 Arrow columns: the values reach the batch bit for bit.
            for name, values in zip(REF_COLUMNS, logps, strict=True):
                dataset = dataset.add_column(name, np.asarray(values.detach().cpu(), dtype=np.float32))
        self._prepared["splits"][split] = dataset

    # ---------------------------------------------------------------- loaders
    def setup(self, stage: str | None = None) -> None:
        self._prepared  # noqa: B018 - prepare once, on every rank

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        ds = self.dataset(split)
        # The cached reference log-probs travel with their pairs when the split has them.
        ds = ds.select_columns([*PAIR_COLUMNS, *(c for c in REF_COLUMNS if c in ds.column_names)])
        collate = PairCollator(self.tokenizer.pad_token_id)
        if shuffle:
            shard = self._shard()
            if self.group_by_length:
                sampler: EpochShuffle = LengthGroupedShuffle(pair_lengths(ds), batch_size, self.seed, **shard)
            else:
                sampler = EpochShuffle(len(ds), self.seed, **shard)
            return training_loader(ds, sampler, batch_size, collate, self.num_workers)
        return DataLoader(
            ds,
            batch_size=batch_size,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _shard(self) -> dict[str, int]:
        """This process's share of the training data: the trainer's ranks under DDP (the sampler shards the
        order itself, so Lightning does not wrap it), else all of it (no trainer attached, or one process)."""
        kwargs = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if not kwargs:
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": int(kwargs["num_replicas"]), "rank": int(kwargs["rank"])}

    def train_dataloader(self) -> DataLoader:
        # One batch = one optimizer step (the module splits it into micro-batches), so the
        # group-weight update sees every pair of the step before the first backward.
        return self._loader("train", self.batch_size * self.accumulate_grad_batches, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, self.eval_batch_size, shuffle=False)

    def rows_of(self, split: str, columns: Sequence[str] = ("group",)) -> Mapping[str, list]:
        """Untokenised columns of a split (for prediction files and notebooks)."""
        ds = self.dataset(split)
        return {c: ds[c] for c in columns}


def pair_lengths(ds: datasets.Dataset) -> list[int]:
    """Tokens of each pair's longer sequence (prompt + completion): what its batch is padded to."""
    return [max(len(c), len(r)) for c, r in zip(ds["chosen_ids"], ds["rejected_ids"], strict=True)]
