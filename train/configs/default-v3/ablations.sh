#!/usr/bin/env bash
# v3's ablations at its own budget, resumable (rerun after any interruption), after train.sh, on the same cached
# features: step 1 without the pixel statistics (heads-no-pixels.yaml, ~15 min; compare its report.json, validation
# after every epoch, with runs/default-v3-heads/report.json) and step 3 without the mirror statistics
# (heads-no-mirror.yaml, ~5 min; compare with runs/default-v3-heads-mirror/report.json).
#   nohup bash train/configs/default-v3/ablations.sh > runs/ablations-v3.log 2>&1 &
set -euo pipefail
source train/configs/resume.sh  # heads RECIPE OUTPUT_DIR
heads train/configs/default-v3/heads-no-pixels.yaml runs/default-v3-heads-no-pixels
heads train/configs/default-v3/heads-no-mirror.yaml runs/default-v3-heads-no-mirror
