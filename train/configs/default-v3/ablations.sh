#!/usr/bin/env bash
# v3's ablations at its own budget, resumable (rerun after any interruption), after train.sh, on the same cached
# features: step 1 without the pixel statistics (heads-no-pixels.yaml, ~15 min; compare its report.json, validation
# after every epoch, with runs/default-v3-heads/report.json) and step 3 without the mirror statistics
# (heads-no-mirror.yaml, ~5 min; compare with runs/default-v3-heads-mirror/report.json), and without the alignment
# tokens (heads-no-align.yaml, ~5 min; the same comparison).
# The comparison: docs/ablations-v3.{json,md} (train/compare_reports.py).
#   nohup bash train/configs/default-v3/ablations.sh > runs/ablations-v3.log 2>&1 &
set -euo pipefail
source train/configs/resume.sh  # heads RECIPE OUTPUT_DIR
heads train/configs/default-v3/heads-no-pixels.yaml runs/default-v3-heads-no-pixels
heads train/configs/default-v3/heads-no-mirror.yaml runs/default-v3-heads-no-mirror
heads train/configs/default-v3/heads-no-align.yaml runs/default-v3-heads-no-align
# each ablation beside the run it ablates, all validated on the same 300 pairs (data-v3-replay's validation split)
python train/compare_reports.py --out docs/ablations-v3 "step 1=runs/default-v3-heads" \
  "step 1 without the pixel statistics=runs/default-v3-heads-no-pixels" \
  "step 3 (shipped)=runs/default-v3-heads-mirror" \
  "step 3 without the mirror statistics=runs/default-v3-heads-no-mirror" \
  "step 3 without the alignment tokens=runs/default-v3-heads-no-align"
