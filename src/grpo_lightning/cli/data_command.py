"""``grpo data``: what training would see, without training.

``grpo data --config configs/default.yaml [--config configs/data/prism.yaml] [--data.…]`` reads the same configs and
flags as ``grpo fit`` (composition, links, the tokenizer choice), builds the data module alone (no model is loaded),
prepares and sets it up as ``fit`` would, and prints :func:`grpo_lightning.data.report.format_report` of it: rows read,
kept and skipped by reason, groups with N_g and share, pairs per split and group, token lengths, identical and
duplicate pairs, and a warning for each group too small to evaluate. ``--report_path FILE`` also writes the JSON.
A real run writes the same JSON beside its logs (:class:`grpo_lightning.callbacks.data_report.DataReportWriter`).
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from jsonargparse import ArgumentParser
from lightning import LightningDataModule

from grpo_lightning.data.report import data_report, format_report, write_report

log = logging.getLogger(__name__)


def build_datamodule(config) -> LightningDataModule:
    """The data module of a parsed ``grpo`` config, built alone: a parser that knows only ``data`` instantiates it
    (nested settings such as a comparisons source's tables included), so the model, its weights and the trainer are
    never built."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    return parser.instantiate_classes(parser.parse_object({"data": config.data})).data


def run(cli_class: type, args: list[str], cli_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Parses ``args`` (the flags after ``grpo data``) with ``cli_class`` (the ``grpo`` CLI, which then builds
    nothing), builds and sets up the data module, prints the report and returns it."""

    class DataCLI(cli_class):
        def add_arguments_to_parser(self, parser) -> None:
            super().add_arguments_to_parser(parser)
            parser.add_argument("--report_path", type=str | None, default=None, help="Also write the report as JSON.")

        def instantiate_classes(self) -> None:  # the data module alone, below
            pass

    # `grpo data ...` from the console: LightningCLI warns that sys.argv (with `data`) and args both exist; args is
    # sys.argv without the word it does not know.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    cli = DataCLI(**{**cli_kwargs, "args": args, "run": False})
    dm = build_datamodule(cli.config)
    dm.prepare_data()
    dm.setup("fit")
    report = data_report(dm)
    sys.stdout.write(format_report(report) + "\n")
    if cli.config.get("report_path"):
        log.info("wrote the data report to %s", write_report(report, cli.config.report_path))
    return report
