"""data/io.py: reading rows from local files (jsonl, json, csv, parquet, a directory of them) and mapping the user's
column names, each refusal naming the file, row and field."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from grpo_lightning.data.io import SOURCE_COLUMNS, DataError, load_files, rename_columns, row_refs

ROWS = [
    {"question": "q1?", "good": " yes", "bad": " no", "team": "north", "unused": 1},
    {"question": "q2?", "good": " a", "bad": " b", "team": "south", "unused": 2},
]
COLUMNS = {"prompt": "question", "chosen": "good", "rejected": "bad", "group": "team"}


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_each_format_reads_the_columns_in_use_with_each_rows_source(tmp_path, fmt):
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")  # a blank line is no row
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    elif fmt == "csv":
        pd.DataFrame(ROWS).to_csv(path, index=False)
    else:
        pd.DataFrame(ROWS).to_parquet(path)
    ds = load_files(str(tmp_path), COLUMNS)  # a directory of one file
    assert sorted(ds.column_names) == sorted([*COLUMNS.values(), *SOURCE_COLUMNS])  # `unused` is not read
    assert ds["question"] == ["q1?", "q2?"] and ds["team"] == ["north", "south"]
    assert row_refs(ds, "x") == ["pairs." + fmt + ", row 1", "pairs." + fmt + ", row 2"]
    renamed = rename_columns(ds, COLUMNS, str(path))
    assert renamed["prompt"] == ["q1?", "q2?"] and renamed["group"] == ["north", "south"]


def test_bad_files_are_refused_naming_file_row_and_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl: missing column\(s\) \['group'\]; found \['prompt'"):
        load_files(str(path))
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "group": "g"}\n\n{"prompt": 3}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, row 2 \(line 3\), field 'prompt': expected text, got int"):
        load_files(str(path))
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "group": 1.5}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, row 1, field 'group': a group label must be a string"):
        load_files(str(path))
    path.write_bytes(b'{"prompt": "p\xff", "chosen": "a", "rejected": "b", "group": "g"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, row 1, field 'prompt': byte 0xff is not valid UTF-8"):
        load_files(str(path))
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("prompt,chosen,rejected,group\np,a,b\n")
    with pytest.raises(DataError, match=r"d\.csv, row 1 \(line 2\): 3 fields, the header has 4"):
        load_files(str(csv_path))
    with pytest.raises(DataError, match=r"files must share one of"):
        load_files([str(path), str(csv_path)])
    with pytest.raises(FileNotFoundError, match=r"data\.path: .*nowhere does not exist"):
        load_files(str(tmp_path / "nowhere"))


def test_column_mapping_is_checked():
    ds = datasets.Dataset.from_dict({"q": ["p"], "chosen": ["a"], "rejected": ["b"], "group": ["g"], "prompt": ["x"]})
    with pytest.raises(DataError, match=r"data\.columns: keys must be among"):
        rename_columns(ds, {"answer": "chosen"}, "src")
    with pytest.raises(DataError, match=r"src: data\.columns maps onto \['prompt'\], which the data already has"):
        rename_columns(ds, {"prompt": "q"}, "src")
    with pytest.raises(DataError, match=r"src: column\(s\) \['nope'\] named in data\.columns not found"):
        rename_columns(ds, {"prompt": "nope"}, "src")
    numbers = datasets.Dataset.from_dict({"prompt": [1], "chosen": ["a"], "rejected": ["b"], "group": ["g"]})
    with pytest.raises(DataError, match=r"src: column 'prompt' must hold text"):
        rename_columns(numbers, None, "src")
