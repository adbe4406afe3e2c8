#!/usr/bin/env bash
# The default model's numbers as shipped in onediff_idc/default_weights/: `onediff eval` of the assembled default
# model on three held-out seeds (scene changes + photo edits) and on photo edits of the held-out Debian photographs
# alone, summarised against the bar (python -m onediff_idc.eval.seeds), copied into docs/ and the model card's
# metadata regenerated from seed 1. TAG names the run's reports in runs/ (a rerun skips the ones that exist).
#   bash train/configs/evaluate-default.sh TAG
set -euo pipefail
TAG=${1:?usage: evaluate-default.sh TAG (e.g. v3)}
MODEL="$(python -c "from onediff_idc.default_model import default_model_dir; print(default_model_dir())")"
for s in 1 2 3; do
  [ -d runs/heldout-v2-s$s ] || onediff data build --out runs/heldout-v2-s$s --seed $s --eval-only \
    --scene-pairs 1500 --photo-pairs 1300 --caption-samples 0 --eval-fraction 0.1 --photos runs/photos
  [ -d runs/heldout-debian-s$s ] || onediff data build --out runs/heldout-debian-s$s --seed $s --eval-only \
    --scene-pairs 0 --photo-pairs 1300 --caption-samples 0 --eval-fraction 0.1 --photos runs/photos --photos-only
  [ -f runs/eval-$TAG-s$s.json ] || onediff eval --model "$MODEL" --data runs/heldout-v2-s$s --batch-size 16 \
    --out runs/eval-$TAG-s$s.json
  [ -f runs/eval-$TAG-debian-s$s.json ] || onediff eval --model "$MODEL" --data runs/heldout-debian-s$s \
    --batch-size 16 --out runs/eval-$TAG-debian-s$s.json
  cp runs/eval-$TAG-s$s.json docs/eval-default-s$s.json
  cp runs/eval-$TAG-debian-s$s.json docs/eval-default-debian-s$s.json
done
python -m onediff_idc.eval.seeds docs/eval-default-s{1,2,3}.json --debian docs/eval-default-debian-s{1,2,3}.json \
  --out docs/eval-default-seeds.json | tee docs/eval-default-seeds.md
python -m onediff_idc.model_card  # the card's metadata from docs/eval-default-s1.json
