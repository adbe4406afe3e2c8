#!/usr/bin/env bash
# Learning curves of the delta-module designs on the cheap proxy (change supervision, no language model), one CPU:
#   bash train/configs/default/curves.sh
# Resumable: rerun it after an interruption; finished parts are kept (data, feature cache, each design's state).
# Writes docs/delta-curves.json and docs/delta-curves.png (see train/learning_curve.py).
set -euo pipefail
PHOTOS=runs/photos  # Debian's photographs (onediff data photos), beside the packages' samples
[ -f "$PHOTOS/manifest.json" ] || onediff data photos --out "$PHOTOS"
DATA=runs/curve-data  # 10,000 training pairs (6,000 scene, 4,000 photo), 500 validation pairs; seed 10
if [ ! -f "$DATA/dataset_dict.json" ] && [ ! -f "$DATA/README.md" ]; then
  rm -rf "$DATA.partial"
  onediff data build --out "$DATA.partial" --seed 10 --scene-pairs 6000 --photo-pairs 4000 --caption-samples 0 \
    --eval-fraction 0.05 --num-proc 2 --photos "$PHOTOS"
  mv "$DATA.partial" "$DATA"
fi
BASE="$(python -c "from onediff_idc.default_model import base_dir; print(base_dir())")"  # what onediff setup built
python train/learning_curve.py --base "$BASE" --data "$DATA" --out runs/curves --feature_cache_dir runs/curve-features \
  --designs zoom32 zoom16 prior-global prior global baseline --milestones 1000 3000 10000 20000 50000 "$@"
cp runs/curves/curves.json docs/delta-curves.json
cp runs/curves/curves.png docs/delta-curves.png
