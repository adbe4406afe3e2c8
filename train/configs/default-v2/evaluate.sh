#!/usr/bin/env bash
# The next default model's numbers, after train.sh: the shipped weights exported from the phrasing run, then
# `onediff eval` of the assembled default model on three held-out seeds (scene changes + photo edits) and on photo
# edits of the held-out Debian photographs alone, summarised against the bar (python -m onediff_idc.eval.seeds).
#   bash train/configs/default-v2/evaluate.sh        # reports in runs/eval-v2-*.json, summary in docs/
set -euo pipefail
python -m onediff_idc.default_model export --from runs/default-v2-phrase
MODEL="$(python -c "from onediff_idc.default_model import default_model_dir; print(default_model_dir())")"
for s in 1 2 3; do
  [ -d runs/heldout-v2-s$s ] || onediff data build --out runs/heldout-v2-s$s --seed $s --eval-only \
    --scene-pairs 1500 --photo-pairs 1300 --caption-samples 0 --eval-fraction 0.1 --photos runs/photos
  [ -d runs/heldout-debian-s$s ] || onediff data build --out runs/heldout-debian-s$s --seed $s --eval-only \
    --scene-pairs 0 --photo-pairs 1300 --caption-samples 0 --eval-fraction 0.1 --photos runs/photos --photos-only
  [ -f runs/eval-v2-s$s.json ] || onediff eval --model "$MODEL" --data runs/heldout-v2-s$s --batch-size 16 \
    --out runs/eval-v2-s$s.json
  [ -f runs/eval-v2-debian-s$s.json ] || onediff eval --model "$MODEL" --data runs/heldout-debian-s$s \
    --batch-size 16 --out runs/eval-v2-debian-s$s.json
done
python -m onediff_idc.eval.seeds runs/eval-v2-s{1,2,3}.json --debian runs/eval-v2-debian-s{1,2,3}.json \
  --out docs/eval-default-v2-seeds.json | tee docs/eval-default-v2-seeds.md
