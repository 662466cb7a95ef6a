#!/usr/bin/env bash
# FSDP + bf16 smoke test (docs/reliability.md, "What is tested where"): on a machine with a GPU, `grpo fit` of the
# default task (tiny Llama, generated data) under configs/base/fsdp.yaml for STEPS optimizer steps, then
# `--ckpt_path last` to 2 x STEPS, and checks both checkpoints (steps, finite weights, α on the simplex). No SIGTERM.
# Without a GPU it says so and exits 0: Lightning's FSDP refuses a CPU accelerator, and CPU CI tests DDP (gloo).
#   scripts/gpu_smoke.sh            # all GPUs that nvidia-smi lists
#   GPUS=1 STEPS=8 OUT=/tmp/smoke scripts/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "gpu-smoke: no GPU found (nvidia-smi lists none): skipped; FSDP and bf16 were NOT tested on this machine"
    exit 0
fi
GPUS=${GPUS:-$(nvidia-smi -L | grep -c '^GPU')}
STEPS=${STEPS:-4}
OUT=${OUT:-$(mktemp -d -t grpo-gpu-smoke.XXXXXX)}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu-smoke: $GPUS GPU(s), FSDP + bf16-mixed, $STEPS + $STEPS steps, logs in $OUT"

RUN=(--config configs/default.yaml --config configs/base/fsdp.yaml --trainer.devices "$GPUS"
     --trainer.logger.init_args.save_dir "$OUT/logs" --trainer.logger.init_args.name smoke
     --trainer.enable_progress_bar false --trainer.num_sanity_val_steps 0 --trainer.limit_val_batches 2)
"$PY" -m grpo_lightning.cli.app fit "${RUN[@]}" --trainer.max_steps "$STEPS"
"$PY" -m grpo_lightning.cli.app fit "${RUN[@]}" --trainer.max_steps "$((2 * STEPS))" --ckpt_path last

"$PY" - "$OUT/logs/smoke" "$STEPS" <<'PY'
import sys
from pathlib import Path

import torch

root, steps = Path(sys.argv[1]), int(sys.argv[2])
for version, want in (("version_0", steps), ("version_1", 2 * steps)):
    ckpt = torch.load(root / version / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == want, (version, ckpt["global_step"], want)
    state = ckpt["state_dict"]
    alpha = state["log_alpha"].double().exp()
    assert torch.isfinite(alpha).all() and abs(float(alpha.sum()) - 1) < 1e-6, alpha
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, f"non-finite tensors in {version}: {bad[:5]}"
    print(f"gpu-smoke: {version}: step {want}, alpha {[round(a, 4) for a in alpha.tolist()]}, {len(state)} tensors finite")
print("gpu-smoke: OK (FSDP + bf16-mixed fit and --ckpt_path last resume)")
PY
