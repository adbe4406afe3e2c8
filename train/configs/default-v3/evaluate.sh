#!/usr/bin/env bash
# v3's numbers, after train.sh: its heads put into the shipped weights with v2's phrasing kept, then evaluated on the
# held-out seeds (train/configs/evaluate-default.sh; reports in runs/eval-v3-*.json, copied into docs/).
#   bash train/configs/default-v3/evaluate.sh      # SKIP_EXPORT=1 evaluates the weights already shipped
set -euo pipefail
if [ -z "${SKIP_EXPORT:-}" ]; then
  python -m onediff_idc.default_model replace-reading --heads runs/default-v3-heads-photos/final
  # the valid changes of v3's training pairs (the same schema as v2's), and no change to the value a field had
  python -m onediff_idc.default_model set-schema --data runs/data-v3-replay runs/data-v3-extra runs/data-v3-photos
fi
bash train/configs/evaluate-default.sh v3
