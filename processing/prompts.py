"""Task prompts: the one place training, evaluation and the demo take them from.

The paper tunes OneDiff with one prompt per source dataset; every row of a DiffCap dataset carries its task and
that task's prompt.
"""

from modeling_onediff.pipeline_onediff import DEFAULT_PROMPT

TASK_PROMPTS = {
    "scene_change": "What changed in the scene between the two images?",
    "photo_edit": "What edit turns the first photo into the second?",
    "surveillance_change": "What changed between the two surveillance frames?",
    "edit_request": "Write the editing request that turns the first image into the second.",
    "bird_difference": "Describe how the bird in the first image differs from the bird in the second.",
    "caption": "Describe the image.",
    "caption_pair": "Describe the first image, then the second image.",
    "difference": DEFAULT_PROMPT,  # the pipeline's default, for pairs of no known task
}

SOURCE_TASKS = {
    "scene-change": "scene_change",
    "photo-edit": "photo_edit",
    "scene-caption": "caption",
    "clevr-change": "scene_change",
    "spot-the-diff": "surveillance_change",
    "image-editing-request": "edit_request",
    "birds-to-words": "bird_difference",
    "retrieval-mined": "difference",
    "instructpix2pix": "difference",
}


def prompt_for(task: str) -> str:
    try:
        return TASK_PROMPTS[task]
    except KeyError:
        raise ValueError(f"Unknown task {task!r}; known tasks: {', '.join(TASK_PROMPTS)}") from None
