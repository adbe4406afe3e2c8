#!/usr/bin/env bash
# v3's training pairs (resumable: skips what exists): v2's 22,000 pairs (default-v2/data.sh: 16,000 scene changes
# and 6,000 photo edits, seed 10) and 12,000 more scene pairs of the three change types v2 confuses most (colour,
# material, nothing changed: 4,000 each, seed 12, so none repeats a v2 pair).
#   bash train/configs/default-v3/data.sh
set -euo pipefail
bash train/configs/default-v2/data.sh
EXTRA=runs/data-v3-extra
if [ ! -f "$EXTRA/dataset_dict.json" ] && [ ! -f "$EXTRA/README.md" ]; then
  rm -rf "$EXTRA.partial"
  onediff data build --out "$EXTRA.partial" --seed 12 --scene-pairs 12000 --photo-pairs 0 --caption-samples 0 \
    --eval-fraction 0 --scene-types color texture none --num-proc 2
  mv "$EXTRA.partial" "$EXTRA"
fi
