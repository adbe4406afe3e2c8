#!/usr/bin/env bash
# v3's ablation at its own budget, resumable (rerun after any interruption), after train.sh: heads.yaml without
# the pixel statistics (heads-no-pixels.yaml), on the same cached features (~20 min). Compare its report.json
# (validation every epoch) with runs/default-v3-heads/report.json.
#   nohup bash train/configs/default-v3/ablations.sh > runs/ablations-v3.log 2>&1 &
set -euo pipefail
HEADS=runs/default-v3-heads-no-pixels
if [ ! -f "$HEADS/final/config.json" ]; then
  RESUME=()
  if compgen -G "$HEADS/checkpoints/checkpoint_*/checkpoint_complete.json" > /dev/null; then RESUME=(--resume latest); fi
  python train/pretrain_delta.py --config train/configs/default-v3/heads-no-pixels.yaml "${RESUME[@]}"
fi
