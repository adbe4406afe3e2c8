"""The `onediff` command.

onediff caption BEFORE AFTER --model DIR [--prompt TEXT] [--max-new-tokens N] [--json]
"""

import argparse
import json
import sys
from pathlib import Path


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _load_pipeline(model_dir: str, device: str):
    import torch

    from modeling_onediff import ImageDifferenceCaptioningPipeline, OneDiffForConditionalGeneration, OneDiffProcessor

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise CliError(f"no OneDiff checkpoint at {model_dir} (config.json missing)")
    model = OneDiffForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    processor = OneDiffProcessor.from_pretrained(path)
    return ImageDifferenceCaptioningPipeline(model=model, processor=processor, device=device)


def caption(args: argparse.Namespace) -> int:
    if args.model is None:
        raise CliError("no embedded default model is installed yet; pass --model DIR (a OneDiff checkpoint folder)")
    for role, image in (("before", args.before), ("after", args.after)):
        if not Path(image).is_file():
            raise CliError(f"{role} image not found: {image}")
    pipe = _load_pipeline(args.model, args.device)
    try:
        result = pipe(
            {"before": args.before, "after": args.after},
            prompt=args.prompt,
            max_new_tokens=args.max_new_tokens,
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps({"before": args.before, "after": args.after, "caption": result["generated_text"]}))
    else:
        print(result["generated_text"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onediff", description="OneDiff image difference captioning")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("caption", help="say what changed between two images")
    p.add_argument("before", help="path of the before image")
    p.add_argument("after", help="path of the after image")
    p.add_argument("--model", help="OneDiff checkpoint folder (save_pretrained output)")
    p.add_argument("--prompt", default=None, help="instruction given with the images")
    p.add_argument("--max-new-tokens", type=int, default=64, help="length limit of the caption, in tokens")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the bare caption")
    p.set_defaults(func=caption)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as error:
        print(f"onediff {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
