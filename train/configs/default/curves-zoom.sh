#!/usr/bin/env bash
# Round 2 of the learning curves (see curves.sh for round 1): the zoom designs, which round 1 found learn fastest,
# on more distinct pairs (16,000 scene + 6,000 photo training pairs, seed 10), to 30k pairs seen. The next default
# model's heads run (train/configs/default-v2/heads.yaml) trains the chosen design afresh on the same data and feature
# cache and scores it every epoch, which extends the curve:
#   bash train/configs/default/curves-zoom.sh
# zoom16-shift chooses its 16 patches by a jitter-tolerant difference (delta_shift_tolerance=1); zoom16-shift-align
# adds the alignment tokens (delta_alignment: the affine map of where B's patches came from in A). Resumable like
# curves.sh. Disk: the feature cache holds 3 layers x 2 images x 256 patches x 384 channels in float16 per pair
# (1.2 MB), about 27 GB in all. Writes docs/delta-curves-zoom.json and docs/delta-curves-zoom.png.
set -euo pipefail
bash train/configs/default-v2/data.sh
DATA=runs/curve-data-zoom
BASE="$(python -c "from onediff_idc.default_model import base_dir; print(base_dir())")"
python train/learning_curve.py --base "$BASE" --data "$DATA" --out runs/curves-zoom \
  --feature_cache_dir runs/curve-features-zoom --max_eval_pairs 700 \
  --designs zoom16-shift-align zoom16-shift zoom16 --milestones 3000 10000 30000 "$@"
cp runs/curves-zoom/curves.json docs/delta-curves-zoom.json
cp runs/curves-zoom/curves.png docs/delta-curves-zoom.png
