"""OneDiff for transformers: config, model, processor and the `image-difference-captioning` pipeline.

The modules in this folder are the remote-code set copied flat into every checkpoint, so they import only
transformers, torch and each other (single-level relative imports).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_onediff import IMAGE_DIFFERENCE_CAPTIONING_TASK, OneDiffConfig
from .modeling_onediff import (
    OneDiffDeltaAttentionMaps,
    OneDiffForConditionalGeneration,
    OneDiffModel,
    OneDiffPreTrainedModel,
    OneDiffVisualDeltaModule,
)
from .pipeline_onediff import ImageDifferenceCaptioningPipeline
from .processing_onediff import OneDiffProcessor

# In-process Auto classes (no trust_remote_code needed while this package is importable) ...
AutoConfig.register("onediff", OneDiffConfig, exist_ok=True)
AutoModel.register(OneDiffConfig, OneDiffForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(OneDiffConfig, OneDiffForConditionalGeneration, exist_ok=True)
AutoProcessor.register(OneDiffConfig, OneDiffProcessor, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    IMAGE_DIFFERENCE_CAPTIONING_TASK,
    pipeline_class=ImageDifferenceCaptioningPipeline,
    pt_model=AutoModelForImageTextToText,
    type="multimodal",
)
# ... and, on save_pretrained, the .py files plus auto_map entries that make checkpoints load anywhere.
OneDiffConfig.register_for_auto_class()
OneDiffForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
OneDiffProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "ImageDifferenceCaptioningPipeline",
    "OneDiffConfig",
    "OneDiffDeltaAttentionMaps",
    "OneDiffForConditionalGeneration",
    "OneDiffModel",
    "OneDiffPreTrainedModel",
    "OneDiffProcessor",
    "OneDiffVisualDeltaModule",
]
