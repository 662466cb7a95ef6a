"""data/io.py: reading rows from local files (jsonl, json, csv, parquet, a directory of them) or the hub and mapping
the user's column names, each refusal naming the file, row and field."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest
from conftest import SMALL_DATA, file_dm, pair_rows, write_jsonl

from grpo_lightning.data import PreferenceDataModule
from grpo_lightning.data.io import SOURCE_COLUMNS, DataError, load_files, rename_columns, row_refs

ROWS = [
    {"question": "q1?", "good": " yes", "bad": " no", "team": "north", "unused": 1},
    {"question": "q2?", "good": " a", "bad": " b", "team": "south", "unused": 2},
]
COLUMNS = {"prompt": "question", "chosen": "good", "rejected": "bad", "group": "team"}
SMALL = SMALL_DATA
_rows, _jsonl, _dm = pair_rows, write_jsonl, file_dm


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


def test_missing_column_is_refused(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "group"} for r in _rows()]
    with pytest.raises(DataError, match=r"missing column\(s\) \['group'\].*--data.columns"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))


def test_missing_column_lists_every_column_of_the_file(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _rows(6))
    _jsonl(tmp_path / "b.jsonl", [{**{k: v for k, v in r.items() if k != "group"}, "country": "X"} for r in _rows(6)])
    with pytest.raises(DataError, match=r"b\.jsonl: missing column\(s\) \['group'\]; found \[.*'country'\]"):
        _dm(tmp_path)


def test_column_named_in_data_columns_must_exist(tmp_path):
    with pytest.raises(DataError, match=r"\['who'\] named in data.columns not found"):
        _dm(_jsonl(tmp_path / "d.jsonl", _rows()), columns={"group": "who"})


def test_wrong_value_type_names_file_row_and_field(tmp_path):
    rows = _rows()
    rows[6]["chosen"] = 42
    with pytest.raises(DataError, match=r"d\.jsonl, row 7, field 'chosen': expected text, got int"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))
    rows = _rows()
    rows[2]["group"] = 1.5
    with pytest.raises(DataError, match=r"row 3, field 'group': a group label must be a string or an integer"):
        _dm(_jsonl(tmp_path / "e.jsonl", rows))


def test_wrong_column_type_in_parquet_is_refused(tmp_path):
    import datasets

    rows = _rows()
    for i, r in enumerate(rows):
        r["prompt"] = i
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    with pytest.raises(DataError, match=r"column 'prompt' must hold text"):
        _dm(tmp_path / "d.parquet")


def test_renamed_columns_are_checked_row_by_row(tmp_path):
    rows = [{"q": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "who": r["group"]} for r in _rows()]
    rows[4]["bad"] = ["a", "list"]
    cols = {"prompt": "q", "chosen": "good", "rejected": "bad", "group": "who"}
    with pytest.raises(DataError, match=r"row 5, field 'bad': expected text, got list"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows), columns=cols)
    rows[4]["bad"] = "fine"
    assert _dm(_jsonl(tmp_path / "d.jsonl", rows), columns=cols).group_names == ["A", "B"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        (
            "d.jsonl",
            b'{"prompt": "a", "chosen": "b", "rejected": "c", "group": "A"}\n{"prompt": "a",\n',
            r"row 2: not valid JSON",
        ),
        ("d.jsonl", b'["not", "an", "object"]\n', r"row 1: expected a JSON object"),
        ("d.json", b'[{"prompt": "a", "chosen": "b"', r"d\.json, line 1: not valid JSON"),
        (
            "d.csv",
            b"prompt,chosen,rejected,group\na,b,c,A\na,b,c\n",
            r"d\.csv, row 2 \(line 3\): 3 fields, the header has 4",
        ),
        (
            "d.csv",
            b'prompt,chosen,rejected,group\na,b,c,A\n"a,b,c,A\n',
            r"d\.csv, line \d+: not valid CSV: unexpected end",
        ),
        ("d.csv", b'prompt,chosen,rejected,group\n"a"x,b,c,A\n', r"d\.csv, line 2: not valid CSV"),
        ("d.parquet", b"PAR1 this is not parquet", r"d\.parquet: could not read as parquet"),
        ("d.jsonl", b"", r"d\.jsonl: no data rows"),
        ("d.csv", b"prompt,chosen,rejected,group\n", r"d\.csv: no data rows"),
    ],
)
def test_unreadable_file_names_file_and_row(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=match):
        _dm(tmp_path / name)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_non_utf8_text_names_file_row_and_field(tmp_path, suffix):
    if suffix == "jsonl":
        lines = [json.dumps(r).encode() for r in _rows(6)]
        lines[3] = lines[3].replace(b"bad answer 3", b"bad answer \xff3")
        content = b"\n".join(lines) + b"\n"
    else:
        content = b"prompt,chosen,rejected,group\n" + b"".join(
            f"{r['prompt']},{r['chosen']},{r['rejected']},{r['group']}\n".encode() for r in _rows(6)
        )
        content = content.replace(b"bad answer 3", b"bad answer \xe93")  # latin-1 é
    (tmp_path / f"d.{suffix}").write_bytes(content)
    with pytest.raises(DataError, match=rf"d\.{suffix}, row 4.*field 'rejected': byte 0x(ff|e9) is not valid UTF-8"):
        _dm(tmp_path / f"d.{suffix}")


def test_lone_surrogate_escape_is_refused(tmp_path):
    rows = _rows(6)
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows[:2])
        + '{"prompt": "x\\ud800", "chosen": "a", "rejected": "b", "group": "A"}\n'
    )
    with pytest.raises(DataError, match=r"row 3, field 'prompt': lone surrogate U\+D800"):
        _dm(tmp_path / "d.jsonl")


def test_error_names_the_row_of_the_right_file_in_a_directory(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _rows(10))
    rows = _rows(10)
    rows[8]["prompt"] = {"nested": 1}
    _jsonl(tmp_path / "b.jsonl", rows)
    with pytest.raises(DataError, match=r"b\.jsonl, row 9, field 'prompt'"):
        _dm(tmp_path)


def test_unused_columns_with_mixed_types_do_not_block_a_directory(tmp_path):
    import datasets

    a, b = _rows(12), _rows(12)
    for i, r in enumerate(a):
        r["id"], r["meta"] = i, {"k": 1}
    for i, r in enumerate(b):
        r["id"], r["prompt"] = f"b{i}", f"other {r['prompt']}"
    (tmp_path / "jsonl").mkdir()
    _jsonl(tmp_path / "jsonl" / "a.jsonl", a)
    _jsonl(tmp_path / "jsonl" / "b.jsonl", b)
    dm = _dm(tmp_path / "jsonl")
    assert dm.rows_in == 24 and "id" not in dm.dataset("train").column_names
    (tmp_path / "pq").mkdir()
    a = [{**r, "group": i % 2, "meta": None} for i, r in enumerate(a)]  # integer groups in one file only
    datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "meta"} for r in a]).to_parquet(
        str(tmp_path / "pq" / "a.parquet")
    )
    datasets.Dataset.from_list([{**r, "group": str(r["group"] == "B")} for r in b]).to_parquet(
        str(tmp_path / "pq" / "b.parquet")
    )
    assert _dm(tmp_path / "pq").group_names == ["0", "1", "False", "True"]


def test_hub_id_offline_suggests_data_path():
    dm = PreferenceDataModule(hub_id="no-such-user/no-such-dataset", **SMALL)
    with pytest.raises(DataError, match=r"could not load 'no-such-user/no-such-dataset'.*--data.path"):
        dm.setup("fit")
