#!/usr/bin/env bash
# The default model v3 on one CPU, resumable: rerun it after any interruption and it continues where it stopped
# (the data; the v2 starting point; three fine-tuning steps of the heads, the first two caching the tower's
# features of their pairs, then training). The
# phrasing is v2's: it was learnt from true changes, so new heads need no new phrasing (default_model
# replace-reading).
#   nohup bash train/configs/default-v3/train.sh > runs/default-v3.log 2>&1 &
# Then: bash train/configs/default-v3/evaluate.sh
set -euo pipefail
bash train/configs/default-v3/data.sh
START=runs/default-v2-model
if [ ! -f "$START/config.json" ]; then
  # v3 starts from v2's reading: the shipped weights must still be v2's (v2 reads no pixel statistics)
  if grep -q '"delta_pixel_statistics"' onediff_idc/default_weights/config_overrides.json; then
    echo "the shipped weights are no longer v2's: restore them first" \
      "(git checkout 42ce745 -- onediff_idc/default_weights)" >&2
    exit 1
  fi
  rm -rf "$START.partial"
  onediff export --out "$START.partial"
  mv "$START.partial" "$START"
fi
source train/configs/resume.sh  # heads RECIPE OUTPUT_DIR
heads train/configs/default-v3/heads.yaml runs/default-v3-heads                 # step 1: the pixels, hard pairs
heads train/configs/default-v3/heads-photos.yaml runs/default-v3-heads-photos   # step 2: photo edits again
heads train/configs/default-v3/heads-mirror.yaml runs/default-v3-heads-mirror   # step 3: the mirror token
