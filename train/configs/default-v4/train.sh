#!/usr/bin/env bash
# The default model v4 from the towers `onediff setup` installs, on one CPU, resumable: rerun it after any
# interruption and it continues where it stopped (the data, the tower's features of each folder, the heads, the
# phrasing). No older weights are read.
#   nohup bash train/configs/default-v4/train.sh > runs/default-v4.log 2>&1 &
# Then: bash train/configs/default-v4/evaluate.sh
set -euo pipefail
bash train/configs/default-v4/data.sh --all
source train/configs/resume.sh
heads train/configs/default-v4/heads.yaml runs/default-v4-heads
PHRASE=runs/default-v4-phrase
if [ ! -f "$PHRASE/final/config.json" ]; then
  RESUME=()
  if compgen -G "$PHRASE/checkpoint-*" > /dev/null; then RESUME=(--resume_from_checkpoint latest); fi
  accelerate launch --config_file train/configs/accelerate/cpu.yaml train/sft.py \
    --config train/configs/default-v4/phrase.yaml "${RESUME[@]}"
fi
python -m onediff_idc.eval.phrasing --model "$PHRASE/final" --data runs/v4/wild-val --split validation \
  --out "$PHRASE/phrasing-wild.json"
