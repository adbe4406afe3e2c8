#!/usr/bin/env bash
# The training pairs of the next default model and of round 2 of the curves (resumable: skips what exists):
# the Debian photographs (onediff data photos), then 16,000 scene + 6,000 photo-edit pairs, seed 10.
#   bash train/configs/default-v2/data.sh
set -euo pipefail
PHOTOS=runs/photos
[ -f "$PHOTOS/manifest.json" ] || onediff data photos --out "$PHOTOS"
DATA=runs/curve-data-zoom
if [ ! -f "$DATA/dataset_dict.json" ] && [ ! -f "$DATA/README.md" ]; then
  rm -rf "$DATA.partial"
  onediff data build --out "$DATA.partial" --seed 10 --scene-pairs 16000 --photo-pairs 6000 --caption-samples 0 \
    --eval-fraction 0.03 --num-proc 2 --photos "$PHOTOS"
  mv "$DATA.partial" "$DATA"
fi
