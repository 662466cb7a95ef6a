"""Execute notebooks with nbclient and write the executed copies (outputs included) to an output directory.

    python notebooks/run.py [--fast] [--out logs/notebooks] [notebooks/quickstart.ipynb ...]

The committed notebooks carry no outputs (nbstripout); this is how to get them with outputs, outside git.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import nbclient
import nbformat

log = logging.getLogger("notebooks")
HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, default=sorted(HERE.glob("*.ipynb")))
    p.add_argument("--out", type=Path, default=HERE.parent / "logs" / "notebooks")
    p.add_argument("--fast", action="store_true", help="NOTEBOOK_FAST=1: the tests' size")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["NOTEBOOK_FAST"] = "1" if args.fast else "0"
    os.environ.setdefault("NOTEBOOK_LOG_DIR", str(args.out / "logs"))
    os.environ.setdefault("NOTEBOOK_FIG_DIR", str(args.out))
    for path in args.paths:
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        client = nbclient.NotebookClient(
            nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.resolve().parent)}}
        )
        client.execute()
        nbformat.write(nb, args.out / path.name)
        log.info("%s: %.0fs -> %s", path.name, time.perf_counter() - started, args.out / path.name)


if __name__ == "__main__":
    main()
