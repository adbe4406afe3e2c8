"""OneDiff image difference captioning: a Gradio app (a Hugging Face Space as is, or `onediff demo`).

    python spaces_demo/app.py [--model DIR] [--port 7860]

The model is a OneDiff checkpoint folder (or Hub repo id) loaded with `trust_remote_code`: `--model`, else
`$ONEDIFF_MODEL`, else the embedded default model of an installed `onediff-idc`. The caption streams in as it is
generated, with how sure the model is that anything changed and the box where it changed drawn on the after image;
"Where it looked" draws the Visual Delta Module's cross-attention over both images. Uploads are read by the
checkpoint's own image reader (16-bit, ICC profiles, EXIF rotation, transparency: what the CLI and pipeline read), and
a pair of different sizes is brought to one frame, with a note saying so.
"""

import argparse
import importlib
import os
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor, TextIteratorStreamer

try:  # Gradio opens each upload with Pillow before the app sees it: phone photographs (HEIC) need the plugin first
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:
    pass

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" if (HERE.parent / "examples").is_dir() else HERE / "examples"
MAX_SIDE = 1024  # larger uploads are downscaled before anything else (larger than 50 Mpixel: refused by the reader)
BOX_COLOUR = (0, 255, 255)
DEFAULT_MAX_NEW_TOKENS = 48
# the model repository a Space runs (README.md `models:`): the default model, `onediff export` + `onediff push`
SPACE_MODEL = "onediff-idc/onediff-default"
FALLBACK_TASKS = {"difference": "Describe the difference between the two images."}


def task_prompts() -> dict[str, str]:
    try:
        from onediff_idc.processing.prompts import TASK_PROMPTS

        return {k: v for k, v in TASK_PROMPTS.items() if k not in ("caption", "caption_pair")}
    except ImportError:  # on a Space without the package
        return FALLBACK_TASKS


def default_model_path() -> str:
    """`$ONEDIFF_MODEL`, else the installed package's embedded default model, else (on a Space, where the package is
    not installed) the Hub repository this Space names in its README's `models:`."""
    if os.environ.get("ONEDIFF_MODEL"):
        return os.environ["ONEDIFF_MODEL"]
    try:
        from onediff_idc.default_model import default_model_dir
    except ImportError:
        return SPACE_MODEL
    try:
        return str(default_model_dir())
    except (AttributeError, RuntimeError) as error:
        raise SystemExit(f"No model: pass --model DIR or set ONEDIFF_MODEL ({error})") from error


def draw_box(image: Image.Image, box: list[int]) -> Image.Image:
    """The image (shrunk for display) with the change box, given in its full-size pixels, drawn on it."""
    drawn = shrunk(image.convert("RGB"))
    ratio = drawn.width / image.width
    scaled = [round(v * ratio) for v in box]
    ImageDraw.Draw(drawn).rectangle(scaled, outline=BOX_COLOUR, width=max(2, min(drawn.size) // 100))
    return drawn


def heatmap(image: Image.Image, attention: np.ndarray) -> Image.Image:
    """The attention map, upsampled to the image and blended in red over a dimmed copy of it."""
    weights = attention / (attention.max() + 1e-12)
    mask = Image.fromarray((weights * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BICUBIC)
    mask = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    base = np.asarray(image.convert("RGB"), dtype=np.float32) * 0.55
    red = np.zeros_like(base)
    red[..., 0] = 255.0
    return Image.fromarray(np.clip(base * (1 - mask) + (0.45 * base + red * 0.8) * mask, 0, 255).astype(np.uint8))


class Captioner:
    """Model, processor, the checkpoint's own pipeline and image reader, and the streaming caption function; one
    generation at a time (the queue orders users)."""

    def __init__(self, model_path: str):
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, trust_remote_code=True).eval()
        self.processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=True)
        self.reader = image_reader(self.processor)
        # the checkpoint's remote code: its model module imports the pipeline class (so it ships with every checkpoint)
        pipeline_class = importlib.import_module(type(self.model).__module__).ImageDifferenceCaptioningPipeline
        self.pipe = pipeline_class(model=self.model, processor=self.processor)
        self.has_delta_module = bool(getattr(self.model.config, "use_delta_module", True))
        self.tasks = task_prompts()

    def read(self, image, role: str) -> Image.Image:
        if image is None:
            raise gr.Error(f"Upload the {role} image first.")
        try:
            picture = self.reader.read_image(image)
            self.reader.check_min_side(picture.size, self.processor.patch_size)
        except ValueError as error:  # the reader's one sentence: unreadable, truncated, too large, too small, HEIC
            raise gr.Error(f"The {role} image: {error}") from error
        return picture

    def inputs(self, before: Image.Image, after: Image.Image, prompt: str) -> dict:
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": prompt}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        return self.processor(images=[(before, after)], text=[text], return_tensors="pt")

    def caption(
        self,
        before,
        after,
        task: str | None = None,
        custom_prompt: str = "",
        max_new_tokens: float = DEFAULT_MAX_NEW_TOKENS,
        sample: bool = False,
        temperature: float = 0.7,
    ):
        """An API call may send only the two images: every other input has a default (the page's own). Yields the
        caption so far, then everything: caption, change probability, the two attention maps, the after image with
        the change box, notes."""
        before, after = self.read(before, "before"), self.read(after, "after")
        framed = self.reader.frame_pair(before, after)  # what the model sees, as the pipeline frames it
        notes = "\n".join(framed.warnings)
        prompt = (custom_prompt or "").strip() or self.tasks.get(task) or next(iter(self.tasks.values()))
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        settings = {"prompt": prompt, "max_new_tokens": int(max_new_tokens), "do_sample": bool(sample)}
        settings |= {"streamer": streamer, "return_change_probability": True}
        settings["return_change_map"] = self.has_delta_module
        if sample:
            settings["temperature"] = float(temperature)
        results, errors = [], []

        def generate():
            try:
                with torch.no_grad():  # the images as read: the pipeline frames them and maps its box back
                    results.append(self.pipe({"before": before, "after": after}, **settings))
            except Exception as error:  # reported in the page below
                errors.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text.strip(), "", None, None, None, notes
        worker.join()
        if errors:
            raise gr.Error(f"Generation failed: {errors[0]}")
        result = results[0]
        probability = f"{result['change_probability']:.1%} sure something changed"
        if not self.has_delta_module:  # no delta module, no map: nothing to say where
            yield result["generated_text"], probability, None, None, None, notes
            return
        with torch.no_grad():
            maps = self.model.get_delta_attention_maps(self.inputs(framed.before, framed.after, prompt)["pixel_values"])
        before_map = heatmap(shrunk(framed.before), maps.before[0].numpy())
        after_map = heatmap(shrunk(framed.after), maps.after[0].numpy())
        boxed = draw_box(after, result["change_box"])  # on the after image as uploaded
        yield result["generated_text"], probability, before_map, after_map, boxed, notes


def shrunk(image: Image.Image) -> Image.Image:
    """A copy at most MAX_SIDE on either side, for display."""
    copy = image.copy()
    copy.thumbnail((MAX_SIDE, MAX_SIDE))
    return copy


def image_reader(processor):
    """The image reader of the checkpoint's own remote code (`image_reading_onediff`, beside its processor), else,
    for a checkpoint saved before it existed, the installed package's."""
    package = type(processor).__module__.rpartition(".")[0]
    for name in (f"{package}.image_reading_onediff", "modeling_onediff.image_reading_onediff"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise SystemExit("This checkpoint predates OneDiff's image reader: re-export it, or `pip install onediff-idc`")


def example_pairs() -> list[list[str]]:
    if not EXAMPLES.is_dir():
        return []
    pairs = []
    for before in sorted(EXAMPLES.glob("*_before.png")):
        after = before.with_name(before.name.replace("_before", "_after"))
        if after.is_file():
            pairs.append([str(before), str(after)])
    return pairs


def build_demo(model_path: str) -> gr.Blocks:
    captioner = Captioner(model_path)
    tasks = list(captioner.tasks)
    with gr.Blocks(title="OneDiff: what changed?") as demo:
        gr.Markdown(
            "# OneDiff: what changed between two images?\n"
            "Upload a *before* and an *after* image. The caption streams in, then how sure the model is that "
            "anything changed, the box where it changed on the after image, and the Visual Delta Module's attention "
            "on each image."
        )
        with gr.Row():
            # file paths as uploaded (image_mode None): the checkpoint's reader, not Gradio's RGB conversion, reads them
            before = gr.Image(type="filepath", label="Before", image_mode=None, elem_id="before-image")
            after = gr.Image(type="filepath", label="After", image_mode=None, elem_id="after-image")
        comparison = gr.ImageSlider(label="Before / after", type="filepath", interactive=False)
        with gr.Row():
            task = gr.Dropdown(tasks, value=tasks[0], label="Task")
            custom_prompt = gr.Textbox(
                label="Or your own instruction", value="", placeholder="e.g. Which object moved?"
            )
        with gr.Accordion("Generation settings", open=False):
            max_new_tokens = gr.Slider(4, 128, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens")
            sample = gr.Checkbox(value=False, label="Sample (instead of greedy)")
            temperature = gr.Slider(0.1, 1.5, value=0.7, step=0.05, label="Temperature")
        button = gr.Button("Describe difference", variant="primary")
        caption = gr.Textbox(label="Difference caption", lines=3, interactive=False)
        with gr.Row():
            probability = gr.Textbox(label="Change probability", interactive=False, elem_id="change-probability")
            notes = gr.Textbox(label="Notes on the pair", interactive=False, elem_id="pair-notes")
        gr.Markdown("### Where it changed, and where it looked")
        with gr.Row():
            box = gr.Image(label="Change box on the after image", interactive=False, elem_id="change-box", format="png")
            before_map = gr.Image(label="Attention on the before image", interactive=False, elem_id="before-map")
            after_map = gr.Image(label="Attention on the after image", interactive=False, elem_id="after-map")

        def show(a, b):
            return (a, b) if a is not None and b is not None else None

        before.change(show, [before, after], comparison, show_progress="hidden")
        after.change(show, [before, after], comparison, show_progress="hidden")
        button.click(
            captioner.caption,
            [before, after, task, custom_prompt, max_new_tokens, sample, temperature],
            [caption, probability, before_map, after_map, box, notes],
            api_name="caption",
        )
        examples = example_pairs()
        if examples:
            gr.Examples(examples, inputs=[before, after], label="Examples (one click)")
    demo.queue(default_concurrency_limit=1, max_size=64)  # concurrent users wait their turn
    return demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="OneDiff Gradio demo")
    parser.add_argument("--model", default=None, help="OneDiff checkpoint folder or Hub repo id")
    # Gradio's own variables first (a Space sets them), then PORT (other hosts), then local defaults
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860)
    parser.add_argument("--host", default=host, help="address to serve on (env: GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=port, help="port (env: GRADIO_SERVER_PORT, then PORT)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    build_demo(args.model or default_model_path()).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
