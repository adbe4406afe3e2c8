#!/usr/bin/env bash
# v2's numbers, after train.sh: the shipped weights exported from the phrasing run, then evaluated on the held-out
# seeds (train/configs/evaluate-default.sh).
#   bash train/configs/default-v2/evaluate.sh        # SKIP_EXPORT=1 evaluates the weights already shipped
set -euo pipefail
[ -n "${SKIP_EXPORT:-}" ] || python -m onediff_idc.default_model export --from runs/default-v2-phrase
bash train/configs/evaluate-default.sh v2
