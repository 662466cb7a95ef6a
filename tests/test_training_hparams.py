"""Tests of grpo_lightning.training.hparams: the removed by-name form of the loss and the weighting is one error."""

from __future__ import annotations

import pytest

from grpo_lightning.training.hparams import loss_from_data


def test_the_removed_by_name_form_is_one_clear_error(monkeypatch, capsys, tmp_path):
    """``model.loss: {name: ipo}`` (the form of earlier versions), in a config file or as a flag: one ``grpo: error:``
    line that shows the class_path form to write; a Python caller gets the same message."""
    from grpo_lightning.cli.app import entry_point

    (tmp_path / "old.yaml").write_text("model:\n  loss: {name: ipo, beta: 0.1}\n")
    want = (
        "model.loss: the by-name form {name: ipo, beta: 0.1} was removed; choose the class: "
        "model.loss: {class_path: grpo_lightning.core.losses.IPO, init_args: {beta: 0.1}}"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRPO_TRACEBACK", raising=False)
    for args, line in (
        (["--config", "old.yaml"], f"grpo: error: old.yaml: {want}"),
        (
            ["--model.weighting.name", "robust"],
            "grpo: error: model.weighting: the by-name form {name: robust} was removed; choose the class: "
            "model.weighting: {class_path: grpo_lightning.core.weighting.RobustWeighting}",
        ),
    ):
        monkeypatch.setattr("sys.argv", ["grpo", "fit", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            entry_point()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err
        assert err.splitlines()[-2:] == [line, "(set GRPO_TRACEBACK=1 for the traceback)"]
    with pytest.raises(ValueError) as raised:
        loss_from_data({"name": "ipo", "beta": 0.1})
    assert str(raised.value) == want
