#!/usr/bin/env bash
# The next default model end to end on one CPU, resumable: rerun it after any interruption and it continues where
# it stopped (the data; the heads, which cache the tower's features; the phrasing; then round 2 of the curves, which
# reads the same feature cache).
#   nohup bash train/configs/default-v2/train.sh > runs/default-v2.log 2>&1 &
# Then: python -m onediff_idc.default_model export --from runs/default-v2-phrase, and onediff eval on held-out seeds.
set -euo pipefail
bash train/configs/default-v2/data.sh
source train/configs/resume.sh
heads train/configs/default-v2/heads.yaml runs/default-v2-heads
PHRASE=runs/default-v2-phrase
if [ ! -f "$PHRASE/final/config.json" ]; then
  RESUME=()
  if compgen -G "$PHRASE/checkpoint-*" > /dev/null; then RESUME=(--resume_from_checkpoint latest); fi
  accelerate launch --config_file train/configs/accelerate/cpu.yaml train/sft.py \
    --config train/configs/default-v2/phrase.yaml "${RESUME[@]}"
fi
python -m onediff_idc.eval.phrasing --model "$PHRASE/final" --data runs/curve-data-zoom --split validation \
  --out "$PHRASE/phrasing.json"
bash train/configs/default/curves-zoom.sh
