#!/usr/bin/env bash
# Learning curves of v4's reading on the cheap proxy (change heads, no language model), before the long run:
#   bash train/configs/default-v4/curves.sh
# The v3 design, the same with a zoom of 32 patches and v4's (v3 + alignment queries + pixel detail), from the towers
# `onediff setup` installs (no older weights),
# on the wild training pairs beside the generators' (11,250 pairs), scored at 1k-50k pairs seen on the validation
# pairs of both (every head field right, per source: scene-change, photo-edit, wild-photo, wild-object, wild-screen).
# Resumable: rerun it after an interruption. Writes docs/v4-curves.{json,png}.
set -euo pipefail
bash train/configs/default-v4/data.sh
BASE="$(python -c "from onediff_idc.default_model import base_dir; print(base_dir())")"
# first the focused proxy (~40 min): the edits v3 read worst, v3's design against every query also starting from the
# alignment (v3-align-queries) and from the pixel summary with each patch's detail too (v4)
python train/learning_curve.py --base "$BASE" --data runs/v4/focus --out runs/v4/focus-curves \
  --feature_cache_dir runs/v4/focus-features --designs v3 v3-align-queries v4 --milestones 1000 3000 10000
cp runs/v4/focus-curves/curves.json docs/v4-focus-curves.json
cp runs/v4/focus-curves/curves.png docs/v4-focus-curves.png
python train/learning_curve.py --base "$BASE" --data runs/v4/wild-train runs/v4/wild-val runs/v4/gen \
  --out runs/v4/curves --feature_cache_dir runs/v4/curve-features --designs v3 v3-zoom32 v4 \
  --milestones 1000 3000 10000 20000 50000 "$@"
cp runs/v4/curves/curves.json docs/v4-curves.json
cp runs/v4/curves/curves.png docs/v4-curves.png
