#!/usr/bin/env bash
# The ablations at v2's budget, resumable (rerun after any interruption): heads.yaml without the alignment tokens
# (heads-no-align.yaml: compare its report.json, validation every epoch, with the shipped run's in MODEL_CARD.md),
# then round 2 of the curves (train/configs/default/curves-zoom.sh). Both read the same 27 GB feature cache.
#   nohup bash train/configs/default-v2/ablations.sh > runs/ablations-v2.log 2>&1 &
set -euo pipefail
bash train/configs/default-v2/data.sh
source train/configs/resume.sh
heads train/configs/default-v2/heads-no-align.yaml runs/default-v2-heads-no-align
bash train/configs/default/curves-zoom.sh
