"""``PreferenceDataModule``: rows {prompt, chosen, rejected, group} → tokenised, group-labelled batches."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader

from grpo_lightning.data.generated import GeneratedOpinions
from grpo_lightning.data.rows import DataError, clean_rows, load_files, load_hub, rename_columns, stratified_split
from grpo_lightning.data.tokenization import PairCollator, count_notes, load_tokenizer, tokenize_pairs, train_tokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class SeededShuffle(torch.utils.data.Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch) alone, so the order of a run does not
    depend on the global RNG and a resumed run sees the same batches (Lightning calls
    ``set_epoch``)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


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
            unlisted groups are skipped and counted.
        tokenizer: a tokenizer hub id or directory; ``None`` trains a byte-level BPE tokeniser on
            the training texts (for the tiny default model) and saves it with the run.
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
        split_fractions: train/val/test fractions, per group, seeded.
        seed: seed of the split.
        num_workers: DataLoader workers.
        predict_split: the split ``predict`` scores.
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
        predict_split: str = "test",
    ) -> None:
        super().__init__()
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(
                f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}"
            )
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        if not 0 < max_prompt_length < max_length:
            raise ValueError(
                f"data.max_prompt_length must lie in (0, data.max_length={max_length}), got {max_prompt_length}"
            )
        if len(split_fractions) != 3 or any(f < 0 for f in split_fractions) or abs(sum(split_fractions) - 1) > 1e-6:
            raise ValueError(f"data.split_fractions must be 3 numbers >= 0 summing to 1, got {split_fractions}")
        if split_fractions[0] <= 0:
            raise ValueError("data.split_fractions: the training fraction must be > 0")
        if predict_split not in SPLITS:
            raise ValueError(f"data.predict_split must be one of {SPLITS}, got {predict_split!r}")
        if groups is not None and len(set(groups)) != len(groups):
            raise ValueError(f"data.groups lists a group twice: {groups}")
        self.path, self.hub_id, self.hub_split = path, hub_id, hub_split
        self.generated = generated or GeneratedOpinions()
        self.columns, self.groups = columns, groups
        self.tokenizer_name, self.tokenizer_vocab_size = tokenizer, tokenizer_vocab_size
        self.tokenizer_gguf_file = tokenizer_gguf_file
        self.max_length, self.max_prompt_length = max_length, max_prompt_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.accumulate_grad_batches = accumulate_grad_batches
        self.split_fractions, self.seed, self.num_workers = tuple(split_fractions), seed, num_workers
        self.predict_split = predict_split
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
            ds = load_files(self.path)
        elif self.hub_id is not None:
            ds = load_hub(self.hub_id, self.hub_split)
        else:
            ds = datasets.Dataset.from_dict(self.generated.rows())
        return rename_columns(ds, self.columns, self.source_name)

    # ---------------------------------------------------------------- preparation
    @cached_property
    def _prepared(self) -> dict[str, Any]:
        raw = self.load_rows()
        self.rows_in = len(raw)
        ds, skipped = clean_rows(raw, self.source_name)
        skipped.update(self.source_skipped)
        names = self._resolve_groups(sorted(set(ds["group"])))
        index = {g: i for i, g in enumerate(names)}
        unlisted = sum(g not in index for g in ds["group"])
        if unlisted:
            skipped["group_not_in_data.groups"] += unlisted
            ds = ds.filter(lambda g: g in index, input_columns="group")
        ds = ds.map(lambda g: {"group_id": index[g]}, input_columns="group")
        parts = stratified_split(ds["group_id"], ds["prompt"], self.split_fractions, self.seed)
        splits = {name: ds.select(rows) for name, rows in zip(SPLITS, parts, strict=True)}
        tokenizer = self._make_tokenizer(splits["train"])
        tokenized = {}
        for name, split in splits.items():
            split = split.map(lambda _, i: {"index": i}, with_indices=True)
            split = split.map(
                tokenize_pairs,
                batched=True,
                fn_kwargs={
                    "tokenizer": tokenizer,
                    "max_length": self.max_length,
                    "max_prompt_length": self.max_prompt_length,
                },
                desc=f"tokenising {name}",
            )
            notes = count_notes(split["note"])
            for note, n in notes.items():
                log.info("%s/%s: %d pairs with %s", self.source_name, name, n, note)
            dropped = len(split) - sum(split["keep"])
            if dropped:
                skipped["completion_empty_after_tokenization"] += dropped
                split = split.filter(lambda k: k, input_columns="keep")
            tokenized[name] = split
        counts = torch.bincount(torch.tensor(tokenized["train"]["group_id"], dtype=torch.long), minlength=len(names))
        empty = [names[g] for g in range(len(names)) if counts[g] == 0]
        if empty:
            raise DataError(f"{self.source_name}: group(s) {empty} have no training pairs after cleaning")
        self.skipped = skipped
        kept = sum(len(s) for s in tokenized.values())
        log.info(
            "%s: %d rows in, %d pairs kept (train/val/test %s), %d skipped %s; groups %s with N_g %s",
            self.source_name,
            self.rows_in,
            kept,
            "/".join(str(len(tokenized[s])) for s in SPLITS),
            sum(skipped.values()),
            dict(skipped),
            names,
            counts.tolist(),
        )
        return {"names": names, "counts": counts.tolist(), "tokenizer": tokenizer, "splits": tokenized}

    def _resolve_groups(self, present: list[str]) -> list[str]:
        if not present:
            raise DataError(f"{self.source_name}: no usable rows")
        if self.groups is None:
            return present
        missing = [g for g in self.groups if g not in present]
        if missing:
            raise DataError(f"data.groups: {missing} not found in {self.source_name}; groups there: {present}")
        return list(self.groups)

    def _make_tokenizer(self, train: datasets.Dataset):
        name, gguf = self.tokenizer_name, self.tokenizer_gguf_file
        if gguf is not None and name is None:  # a full path to a GGUF file
            name, gguf = str(Path(gguf).parent), Path(gguf).name
        if name is not None:
            return load_tokenizer(name, gguf_file=gguf)
        texts = [p + c for p, c in zip(train["prompt"], train["chosen"], strict=True)] + list(train["rejected"])
        return train_tokenizer(texts, self.tokenizer_vocab_size)

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

    # ---------------------------------------------------------------- loaders
    def setup(self, stage: str | None = None) -> None:
        self._prepared  # noqa: B018 - prepare once, on every rank

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        ds = self.dataset(split).select_columns(["chosen_ids", "rejected_ids", "prompt_length", "group_id", "index"])
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=SeededShuffle(len(ds), self.seed) if shuffle else None,
            collate_fn=PairCollator(self.tokenizer.pad_token_id),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

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
