"""`onediff data edit`: InstructPix2Pix edits of a photo folder (DiffCap's third source), through diffusers.

Each image is edited with an instruction drawn (seeded) from an instructions file by diffusers'
`StableDiffusionInstructPix2PixPipeline`, loaded from a local folder (never downloaded); the captioner turns the
instruction into difference captions. A GPU is used when present; CPU works, slowly. Output: a DiffCap dataset,
source `instructpix2pix`, the instruction kept as ground truth in `change`.
"""

import json
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from PIL import Image
from tqdm.auto import tqdm

from .mining import list_images
from .prompts import SOURCE_TASKS
from .schema import FEATURES, make_row, open_image, save_diffcap

SOURCE = "instructpix2pix"


def read_instructions(path: str | Path) -> list[str]:
    """One instruction per line (blank lines and lines starting with # ignored), or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Instructions file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        instructions = [str(i).strip() for i in json.loads(text)]
    else:
        instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    instructions = [i for i in instructions if i]
    if not instructions:
        raise ValueError(f"No instruction in {path}")
    return instructions


def load_pipeline(model: str | Path, device: str | None = None):
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline

    model = Path(model)
    if not (model / "model_index.json").is_file():
        raise ValueError(f"No diffusers pipeline at {model} (model_index.json missing)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(model, torch_dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def edit(
    images: str | Path,
    instructions: str | Path,
    model: str | Path,
    out: str | Path,
    captioner,
    resolution: int = 512,
    steps: int = 20,
    guidance_scale: float = 7.5,
    image_guidance_scale: float = 1.5,
    seed: int = 0,
    num_references: int = 3,
    device: str | None = None,
    progress: bool = True,
) -> tuple[DatasetDict, dict]:
    import torch

    images, out = Path(images), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    files = list_images(images)
    prompts = read_instructions(instructions)
    pipe = load_pipeline(model, device)
    rng = np.random.default_rng(seed)
    rows, unreadable, uncaptioned = [], {}, 0
    for index, path in enumerate(tqdm(files, desc="editing", unit="image", disable=not progress)):
        before = open_image(path)
        if isinstance(before, str):
            unreadable[str(path)] = before
            continue
        before = before.resize((resolution, resolution), Image.Resampling.BICUBIC)
        instruction = prompts[int(rng.integers(len(prompts)))]
        generator = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + index)
        after = pipe(
            instruction,
            image=before,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            generator=generator,
        ).images[0]
        references = captioner.caption({"instruction": instruction}, num_references)
        if not references:
            uncaptioned += 1
            continue
        change = {"type": "instruction", "instruction": instruction}
        rows.append(
            make_row(
                f"{SOURCE}/{path.relative_to(images)}",
                SOURCE,
                SOURCE_TASKS[SOURCE],
                [before, after.convert("RGB")],
                references,
                "instruction_edit",
                change,
            )
        )
    report = {
        "images": len(files),
        "edited": len(rows),
        "unreadable": unreadable,
        "dropped_without_valid_caption": uncaptioned,
        "captioner": dict(captioner.stats),
        "settings": {
            "resolution": resolution,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "image_guidance_scale": image_guidance_scale,
            "seed": seed,
        },
    }
    if not rows:
        raise ValueError(f"No pair was produced ({len(unreadable)} unreadable, {uncaptioned} without caption)")
    dataset = DatasetDict({"train": Dataset.from_list(rows, features=FEATURES)})
    save_diffcap(dataset, out, progress=progress)
    (out / "edit_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return dataset, report
