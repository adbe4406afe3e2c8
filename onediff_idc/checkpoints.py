"""Loading a OneDiff checkpoint folder as an `image-difference-captioning` pipeline, with the installed classes."""

from pathlib import Path


def load_pipeline(model_dir: str | Path, device: str = "cpu"):
    import torch

    from modeling_onediff import ImageDifferenceCaptioningPipeline, OneDiffForConditionalGeneration, OneDiffProcessor

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"No OneDiff checkpoint at {model_dir} (config.json missing)")
    model = OneDiffForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = OneDiffProcessor.from_pretrained(model_dir)
    return ImageDifferenceCaptioningPipeline(model=model, processor=processor, device=device)
