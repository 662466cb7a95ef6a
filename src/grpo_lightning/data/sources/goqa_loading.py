"""Reading Global Opinion QA in its own schema: local CSV/parquet files, a directory, or the hub."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import datasets

DEFAULT_HUB_ID = "Anthropic/llm_global_opinions"
REQUIRED_COLUMNS: tuple[str, ...] = ("question", "selections", "options")


def _csv_header(file: Path) -> list[str]:
    with file.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _local_files(path: Path) -> tuple[str, list[str]]:
    """Return the builder name (``csv`` / ``parquet``) and the sorted data files at ``path``."""
    kinds = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
    if path.is_file():
        kind = kinds.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"GOQA file {path} must be a .csv or .parquet file")
        return kind, [str(path)]
    if path.is_dir():
        found: dict[str, list[str]] = collections.defaultdict(list)
        for file in sorted(path.iterdir()):
            if file.is_file() and file.suffix.lower() in kinds:
                found[kinds[file.suffix.lower()]].append(str(file))
        if not found:
            raise FileNotFoundError(f"GOQA data directory {path} holds no .csv or .parquet file")
        if len(found) > 1:
            raise ValueError(f"GOQA data directory {path} mixes CSV and parquet files; keep one format per directory")
        ((kind, files),) = found.items()
        return kind, files
    raise FileNotFoundError(f"GOQA data path {path} does not exist")


def _load_local(path: Path) -> datasets.Dataset:
    kind, files = _local_files(path)
    if kind == "csv":
        headers = {tuple(_csv_header(Path(file))) for file in files}
        if len(headers) != 1:
            raise ValueError(f"the CSV files under {path} do not share one header: {sorted(headers)}")
        (header,) = headers
        # Every column as a string, and empty cells as "" rather than None / NaN.
        features = datasets.Features({name: datasets.Value("string") for name in header})
        return datasets.load_dataset(
            "csv", data_files=files, split="train", features=features, keep_default_na=False, na_filter=False
        )
    return datasets.load_dataset("parquet", data_files=files, split="train")


def _load_hub(hub_id: str, split: str) -> datasets.Dataset:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return datasets.load_dataset(hub_id, split=split)
    except (ConnectionError, OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise ConnectionError(
            f"Could not load the Global Opinion QA dataset {hub_id!r} from the Hugging Face Hub "
            f"(offline mode, e.g. HF_HUB_OFFLINE=1, or no network; {type(exc).__name__}: {exc}). "
            "Point the loader at a local copy instead: --data.path /path/to/global_opinions.csv "
            "(a CSV or parquet file, or a directory of them, in the dataset's own schema)."
        ) from exc


def load_goqa_table(path: str | None = None, hub_id: str = DEFAULT_HUB_ID, split: str = "train") -> datasets.Dataset:
    """Load the raw GOQA table (columns ``question``, ``selections``, ``options`` and usually ``source``).

    Args:
        path: a local ``.csv`` / ``.parquet`` file, or a directory of them (one format, read in name order); ``None``
            loads ``hub_id`` from the Hugging Face Hub (or its local cache).  CSV columns are all read as strings,
            with empty cells kept as ``""``.
        hub_id: the dataset id on the Hub, used only when ``path`` is ``None``.
        split: the Hub split, used only when ``path`` is ``None`` (local files always form one table).

    Raises:
        ConnectionError: when the Hub cannot be reached (offline mode or no network) and nothing is cached; the
            message suggests ``--data.path``.
        FileNotFoundError: when ``path`` does not exist or a directory holds no CSV / parquet file.
        ValueError: for an unsupported file type, mixed formats, or missing required columns.
    """
    table = _load_hub(hub_id, split) if path is None else _load_local(Path(path).expanduser())
    missing = [column for column in REQUIRED_COLUMNS if column not in table.column_names]
    if missing:
        source = hub_id if path is None else path
        raise ValueError(f"GOQA table from {source} lacks the column(s) {missing}; found {table.column_names}")
    return table
