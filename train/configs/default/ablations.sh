#!/usr/bin/env bash
# The default model's four-way ablation at one short, equal budget on one CPU (MODEL_CARD.md, "Ablations"):
#   [stage 1: Coupled Sample Training, 60 steps x 8] -> stage 2: LoRA SFT (sft.yaml), 100 steps x 8 -> eval + gap
# full model | no delta module (image tokens only, LLaVA-style) | no coupled stage | randomly initialised towers.
# Run from the repository root after `onediff setup` and `onediff data build` (pretrain_coupled.yaml's header);
# the held-out test split: onediff data build --out runs/default-heldout --seed 1 --eval-only
set -euo pipefail
ACCELERATE="accelerate launch --config_file train/configs/accelerate/cpu.yaml"
COUPLED="$ACCELERATE train/pretrain_coupled.py --config train/configs/default/pretrain_coupled.yaml"
SFT="$ACCELERATE train/sft.py --config train/configs/default/sft.yaml --max_steps 100 --save_steps 100"
BASE="$(python -c "from onediff_idc.default_model import base_dir; print(base_dir())")"  # what onediff setup built

measure () {  # $1: variant, $2: checkpoint
  onediff eval --model "$2" --data runs/default-heldout --split test --out "runs/eval-ablation-$1.json"
  python -m onediff_idc.eval.conditioning_gap --model "$2" --data runs/default-data | tee "runs/gap-ablation-$1.txt"
}

# full model: stage 1 as in the recipe (pretrain_coupled.yaml -> runs/default-coupled), then stage 2
$SFT --model_name_or_path runs/default-coupled/final --output_dir runs/ablation-full
measure full runs/ablation-full/final

# no delta module: the same base without it, the same two stages
python -c "from onediff_idc.default_model import assemble_base; assemble_base('runs/ablation-nodelta-base', use_delta_module=False)"
$COUPLED --model_name_or_path runs/ablation-nodelta-base --output_dir runs/ablation-nodelta-coupled
$SFT --model_name_or_path runs/ablation-nodelta-coupled/final --output_dir runs/ablation-nodelta
measure nodelta runs/ablation-nodelta/final

# no coupled stage: stage 2 straight from the base
$SFT --model_name_or_path "$BASE" --output_dir runs/ablation-nocoupled
measure nocoupled runs/ablation-nocoupled/final

# randomly initialised towers: the same architecture and recipe, no pretrained weights
python -m onediff_idc.default_model random-base --out runs/ablation-random-base
$COUPLED --model_name_or_path runs/ablation-random-base --output_dir runs/ablation-random-coupled
$SFT --model_name_or_path runs/ablation-random-coupled/final --output_dir runs/ablation-random
measure random runs/ablation-random/final
