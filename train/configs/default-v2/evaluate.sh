#!/usr/bin/env bash
# v2's numbers, after train.sh: the shipped weights exported from the phrasing run, then evaluated on the held-out
# seeds (train/configs/evaluate-default.sh).
#   bash train/configs/default-v2/evaluate.sh        # SKIP_EXPORT=1 evaluates the weights already shipped
set -euo pipefail
if [ -z "${SKIP_EXPORT:-}" ]; then
  python -m onediff_idc.default_model export --from runs/default-v2-phrase
  # the heads decode only valid changes (the phrasing run predates delta_change_schema)
  python -m onediff_idc.default_model set-schema --data runs/curve-data-zoom
fi
bash train/configs/evaluate-default.sh v2
