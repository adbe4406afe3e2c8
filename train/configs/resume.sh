# Sourced by the recipes' shell scripts: `heads RECIPE OUTPUT_DIR` runs one train/pretrain_delta.py recipe unless its
# final model exists, resumed from its last complete checkpoint if it has one (rerun a script after any
# interruption and it continues where it stopped).
heads() {
  if [ ! -f "$2/final/config.json" ]; then
    local resume=()
    if compgen -G "$2/checkpoints/checkpoint_*/checkpoint_complete.json" > /dev/null; then resume=(--resume latest); fi
    python train/pretrain_delta.py --config "$1" "${resume[@]}"
  fi
}
