"""Loading a OneDiff checkpoint folder as an `image-difference-captioning` pipeline, with the installed classes.

Whatever is wrong with the folder (not there, another kind of model, missing or damaged weights, config or
processor files) becomes one `ValueError` sentence that says what to do, before or instead of a library traceback.
"""

import json
from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def check_checkpoint(model_dir: str | Path, fix: str) -> None:
    """Raises ValueError (ending in `fix`) if `model_dir` cannot be a loadable OneDiff checkpoint."""
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    if not config.is_file():
        raise ValueError(f"No OneDiff checkpoint at {model_dir} (config.json missing); {fix}")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{config} is damaged ({error}); {fix}") from error
    if model_type != "onediff":
        raise ValueError(f"{model_dir} holds a {model_type or 'unknown'} model, not a OneDiff checkpoint; {fix}")
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"{model_dir} has no weights ({WEIGHT_FILES[0]} missing); {fix}")
    if not (model_dir / "processor_config.json").is_file() or not (model_dir / "tokenizer.json").is_file():
        raise ValueError(f"{model_dir} lacks its processor (processor_config.json, tokenizer.json); {fix}")


def load_pipeline(model_dir: str | Path, device: str = "cpu", fix: str | None = None):
    import torch
    from transformers.utils import logging

    from modeling_onediff import ImageDifferenceCaptioningPipeline, OneDiffForConditionalGeneration, OneDiffProcessor

    fix = fix or "pass --model a folder written by save_pretrained or `onediff export`, or export/download it again"
    check_checkpoint(model_dir, fix)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # a failed load's multi-line report would bury the one line that says what to do
    try:
        model = OneDiffForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
        processor = OneDiffProcessor.from_pretrained(model_dir)
    except Exception as error:  # safetensors, JSON, tokenizers and OS errors all mean: these files are damaged
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "ignore_mismatched_sizes" in reason:
            reason = "its weights do not fit its config: tensor shapes differ"
        raise ValueError(f"Could not load the OneDiff checkpoint at {model_dir} ({reason}); {fix}") from error
    finally:
        logging.set_verbosity(verbosity)
    return ImageDifferenceCaptioningPipeline(model=model, processor=processor, device=device)
