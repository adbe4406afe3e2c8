#!/usr/bin/env bash
# The default model v4's pairs (resumable: skips what exists; every folder is rebuilt from what `onediff setup` and
# Debian's packages give, nothing else):
#   bash train/configs/default-v4/data.sh          # what the learning curves read (curves.sh)
#   bash train/configs/default-v4/data.sh --all    # and the long run's further pairs (train.sh)
# - runs/photos, runs/stamps: Debian's photographs and photographic cut-outs, split by picture and by object;
# - runs/v4/wild-train: the kinds of pairs people bring (nothing changed, global edits, objects added / removed /
#   moved / replaced / recoloured / resized, screenshots, unrelated pictures, camera moves) drawn only from the
#   *training* photographs, objects and page templates (`onediff data wild --splits train`), 150 of each of 35 kinds;
# - runs/v4/wild-val: the same kinds from the validation photographs, objects and templates, 10 of each;
# - runs/v4/gen: the generators' scene changes and photo edits, as v2 and v3 trained on (seed 13, a training seed);
# - runs/v4/focus: 2,000 turns, sharpenings, zooms, flips and blurs (+400 validation; seed 40), the curves' proxy of
#   the edits v3 read worst;
# - with --all, runs/v4/hard and runs/v4/photos: v3's hard pairs (colour, material, nothing changed; seed 12) and
#   photo edits (seed 14).
# The wild test split (held-out photographs, objects, templates) is built by evaluate.sh, never here.
set -euo pipefail
PHOTOS=runs/photos
STAMPS=runs/stamps
[ -f "$PHOTOS/manifest.json" ] || onediff data photos --out "$PHOTOS"
[ -f "$STAMPS/manifest.json" ] || onediff data stamps --out "$STAMPS"
made() { [ -f "$1/README.md" ] || [ -f "$1/dataset_dict.json" ]; }
wild() {  # wild FOLDER ARGS...: into FOLDER.partial, renamed when complete
  local out=$1
  shift
  if ! made "$out"; then
    rm -rf "$out.partial"
    onediff data wild --out "$out.partial" --photos "$PHOTOS" --stamps "$STAMPS" --screens "$@"
    mv "$out.partial" "$out"
  fi
}
build() {  # build FOLDER ARGS...: into FOLDER.partial, renamed when complete
  local out=$1
  shift
  if ! made "$out"; then
    rm -rf "$out.partial"
    onediff data build --out "$out.partial" --caption-samples 0 --num-proc 2 "$@"
    mv "$out.partial" "$out"
  fi
}
wild runs/v4/wild-train --seed 30 --per-type 150 --splits train
wild runs/v4/wild-val --seed 31 --per-type 10 --splits validation
build runs/v4/gen --seed 13 --scene-pairs 4400 --photo-pairs 1600 --eval-fraction 0.05 --photos "$PHOTOS"
# the focused proxy of the photo edits v3 read worst (a turn's direction, a sharpening's strength) and their lookalikes
build runs/v4/focus --seed 40 --scene-pairs 0 --photo-pairs 2000 --eval-fraction 0.2 --photos "$PHOTOS" \
  --photo-types rotation sharpen zoom flip blur
if [ "${1:-}" = "--all" ]; then
  build runs/v4/hard --seed 12 --scene-pairs 9000 --photo-pairs 0 --eval-fraction 0 --scene-types color texture none
  build runs/v4/photos --seed 14 --scene-pairs 0 --photo-pairs 3000 --eval-fraction 0 --photos "$PHOTOS"
fi
