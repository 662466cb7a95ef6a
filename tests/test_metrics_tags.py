"""Every TensorBoard tag string lives in ``grpo_lightning/metrics/tags.py``: the code is read (its syntax tree: string
constants and the literal parts of f-strings) for a tag spelled anywhere else, so a writer and a reader of a tag can
never disagree on its name. Also: the tag helpers compose the tags the metrics log."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import torch

from grpo_lightning.metrics import GroupOpinionAlignment, GroupPreferenceMetrics, tags

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "grpo_lightning"
TAGS_MODULE = PACKAGE / "metrics" / "tags.py"
#: The stages a tag starts with (training, the evaluation splits, prediction).
TAG_PREFIXES = ("train/", "val/", "test/", "predict/")


def _metric_names() -> set[str]:
    """The second part of every tag tags.py composes (``loss`` of ``val/loss/<g>``, ``group_weight`` of
    ``train/group_weight/<g>``, …): a name the template logs, whatever the stage."""
    every = [*tags.train_tags(["g"]), *tags.eval_tags("val", ["g"]), *tags.opinion_tags("val", ["g"])]
    every += [tags.TRAIN_LOSS_EPOCH, tags.ALPHA_STEP_SIZE, tags.GROUP_WEIGHTS_FIGURE]
    return {t.split("/")[1] for t in every}


#: After a placeholder, ``/<a logged metric>``: the ``{stage}/loss`` form of a tag (``f"{p}/pairs/{g}"``); a path
#: built the same way (``f"{root}/ref_logps"``) names no metric.
AFTER_PLACEHOLDER = re.compile("/(?:" + "|".join(sorted(map(re.escape, _metric_names()))) + ")(?:/|$)")


def stray_tags(source: str, filename: str) -> list[str]:
    """``file:line 'literal'`` for each string that looks like a tag: a constant, or an f-string's first literal
    part, starting with a stage (``"val/loss"``, ``f"train/group_weight/{g}"``), or an f-string's literal part
    that follows a placeholder with ``/<metric>`` (``f"{stage}/loss"``)."""
    tree = ast.parse(source, filename)
    found = []
    in_fstrings: set[int] = set()  # their literal parts are judged above, as parts of the f-string
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr):
            continue
        for i, part in enumerate(node.values):
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                in_fstrings.add(id(part))
                after = i > 0 and isinstance(node.values[i - 1], ast.FormattedValue)
                if (i == 0 and part.value.startswith(TAG_PREFIXES)) or (after and AFTER_PLACEHOLDER.match(part.value)):
                    found.append((node.lineno, ast.unparse(node)))
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstrings
        if is_text and node.value.startswith(TAG_PREFIXES):
            found.append((node.lineno, repr(node.value)))
    return [f"{filename}:{line} {text}" for line, text in sorted(set(found))]


def test_no_tag_is_spelled_outside_the_tags_module() -> None:
    sources = sorted(p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")] if p != TAGS_MODULE)
    assert len(sources) > 50  # the package was found
    stray = [s for path in sources for s in stray_tags(path.read_text(), str(path.relative_to(ROOT)))]
    assert not stray, "tag strings outside metrics/tags.py (use its constants and helpers):\n" + "\n".join(stray)


def test_the_check_finds_a_stray_tag() -> None:
    """The check can fail: literals of each form are flagged with file and line; a docstring that mentions a tag, a
    path built in an f-string without a stage and the helpers' calls are not."""
    snippet = (
        '"""``train/loss`` is the objective."""\n'
        'LOSS = "val/loss"\n'
        'out[f"{p}/pairs/{name}"] = 1\n'
        'weight = f"train/group_weight/{g}"\n'
        "log_file = f'{root}/ref_logps'\n"
        'ok = tags.eval_tag(stage, "loss")\n'
        'also = scalars["predict/score"]\n'
    )
    assert stray_tags(snippet, "snippet.py") == [
        "snippet.py:2 'val/loss'",
        "snippet.py:3 f'{p}/pairs/{name}'",
        "snippet.py:4 f'train/group_weight/{g}'",
        "snippet.py:7 'predict/score'",
    ]


def test_the_metrics_log_the_listed_tags() -> None:
    """``eval_tags`` and ``opinion_tags`` name exactly what the metrics compute when every group has pairs."""
    groups = ["A", "B"]
    metric = GroupPreferenceMetrics(groups, "val")
    b = torch.ones(4)
    group = torch.tensor([0, 1, 0, 1])
    metric.update(b, b, -b, b, -b, b, -b, group)
    assert set(metric.compute()) == set(tags.eval_tags("val", groups))
    alignment = GroupOpinionAlignment(groups, "test")
    alignment.update(torch.tensor([0.5, 0.7]), torch.tensor([0, 1]))
    assert set(alignment.compute()) == set(tags.opinion_tags("test", groups))
    assert tags.eval_group_tag("val", "loss", "A") == tags.eval_group_prefix("val", "loss") + "A" == "val/loss/A"
