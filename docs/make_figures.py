"""Draws the README figure from a real default GR-IPO run: group weights w_g and per-group validation loss over steps.

The figure in docs/figures/group_weights.png was made with exactly (from the repository root, CPU, about 6 minutes):

    grpo fit --config configs/experiment/default_gripo.yaml --trainer.logger.init_args.save_dir /tmp/docsrun
    python docs/make_figures.py --log-dir /tmp/docsrun/default_gripo/version_0

Without ``--log-dir`` the script first trains that run itself (into ``logs/default_gripo/version_N``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures" / "group_weights.png"


def train() -> Path:
    from grpo_lightning.cli import main

    cli = main(["fit", "--config", str(ROOT / "configs" / "experiment" / "default_gripo.yaml")])
    return Path(cli.trainer.logger.log_dir)


def draw(log_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    prefix = "train/group_weight/"
    groups = [t[len(prefix) :] for t in tags if t.startswith(prefix)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for g, name in enumerate(groups):
        w = acc.Scalars(prefix + name)
        left.plot([e.step for e in w], [e.value for e in w], color=f"C{g}", label=name)
        v = acc.Scalars(f"val/loss/{name}")
        right.plot([e.step for e in v], [e.value for e in v], color=f"C{g}", marker=".", label=name)
    worst = acc.Scalars("val/worst_group_loss")
    right.plot([e.step for e in worst], [e.value for e in worst], "k--", label="worst group")
    left.set(title="GR-IPO group weights $w_g$", xlabel="optimizer step", ylabel="$w_g$")
    right.set(title="validation loss per group", xlabel="optimizer step", ylabel="IPO loss")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-dir", type=Path, help="a finished default_gripo run (version_N directory)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    draw(args.log_dir or train(), args.out)


if __name__ == "__main__":
    main()
