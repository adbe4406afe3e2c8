"""`onediff bench`: speed, memory and efficiency of OneDiff, measured side by side in one run.

For one architecture size (`--config default|tiny|full`) it builds, from random weights (speed does not depend on
training), OneDiff at several image-token poolings and a LLaVA-style baseline from transformers' own
`LlavaForConditionalGeneration` with the same vision tower and decoder, fed both images' tokens and no delta
module. Each model is measured in its own worker process; peak memory is the resident set (CPU, sampled every 5 ms) or
the allocator's peak (CUDA) above the level before the model was built:
- generation: latency at batch 1 with and without KV cache (their ratio is the cache's speed-up) and throughput
  (pairs/s) at batch 16 with the cache (`--no-cache-throughput` adds it without: slow on a CPU), the same number of
  new tokens every time, medians over `--repeats`;
- a stage-2 training step (LoRA on the decoder, delta module and projectors trained): samples/s, FLOPs counted by
  `torch.utils.flop_counter`, achieved FLOP/s against this machine's measured matmul peak (MFU), peak memory.
Ratios (OneDiff / LLaVA, cache / no cache) come from these medians. Output: JSON and a Markdown table.
"""

import multiprocessing
import os
import statistics
import threading
import time

TEXT_TOKENS = 32  # prompt text around the placeholders
NEW_TOKENS = 16
TRAIN_BATCH = 4
COMPLETION_TOKENS = 16


def architecture(name: str) -> dict:
    """Vision and text configs (dicts) of an architecture size, and its image side."""
    if name == "tiny":
        vision = {
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        }
        text = {
            "model_type": "llama",
            "vocab_size": 512,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
        return {
            "vision": vision,
            "text": text,
            "image_size": 32,
            "delta": {"num_delta_queries": 4, "delta_num_hidden_layers": 2, "delta_feature_layers": [1, 2, 3]},
            "poolings": [1, 2],
        }
    if name == "default":  # DINOv2-S/14 + SmolLM2-135M-Instruct, the embedded default model's towers
        from onediff_idc.default_model import BASE_CONFIG, IMAGE_SIZE

        vision = {
            "model_type": "dinov2",
            "hidden_size": 384,
            "num_hidden_layers": 12,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "patch_size": 14,
            "image_size": 518,
            "layerscale_value": 1.0,
        }
        text = {
            "model_type": "llama",
            "vocab_size": 49152,
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "tie_word_embeddings": True,
            "max_position_embeddings": 8192,
        }
        delta = {k: v for k, v in BASE_CONFIG.items() if k != "image_token_pooling"}
        return {"vision": vision, "text": text, "image_size": IMAGE_SIZE, "delta": delta, "poolings": [1, 2, 4]}
    if name == "full":  # the paper's size: CLIP ViT-L/14-336 + a 7B Llama-architecture decoder
        vision = {
            "model_type": "clip_vision_model",
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
        }
        text = {
            "model_type": "llama",
            "vocab_size": 32000,
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
        }
        delta = {
            "delta_feature_layers": [8, 16, 24],
            "num_delta_queries": 32,
            "delta_hidden_size": 768,
            "delta_num_attention_heads": 12,
        }
        return {"vision": vision, "text": text, "image_size": 336, "delta": delta, "poolings": [1, 2]}
    raise ValueError(f"Unknown bench config {name!r}: choose tiny, default or full")


def _build(spec: dict, device: str, dtype):
    """(model, inputs for batch size b) of one measured variant, random weights."""
    import torch
    from transformers import AutoConfig, LlavaConfig, LlavaForConditionalGeneration

    from modeling_onediff import OneDiffConfig, OneDiffForConditionalGeneration

    arch = architecture(spec["config"])
    vision = AutoConfig.for_model(**arch["vision"])
    text = AutoConfig.for_model(**arch["text"])
    vocab, side, patch = arch["text"]["vocab_size"], arch["image_size"], arch["vision"]["patch_size"]
    image_id, delta_id = vocab - 1, vocab - 2
    torch.manual_seed(0)
    if spec["kind"] == "llava":
        config = LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=image_id,
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
        )
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
        image_tokens, delta_tokens = (side // patch) ** 2, 0
    else:
        config = OneDiffConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=image_id,
            delta_token_id=delta_id,
            image_token_pooling=spec["pooling"],
            **arch["delta"],
        )
        with torch.device(device):
            model = OneDiffForConditionalGeneration(config)
        image_tokens, delta_tokens = config.num_image_tokens(side), config.num_delta_queries
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None

    def inputs(batch: int, completion: int = 0) -> dict:
        generator = torch.Generator().manual_seed(batch)
        text_ids = torch.randint(1, vocab - 2, (batch, TEXT_TOKENS + completion), generator=generator)
        placeholders = [image_id] * (2 * image_tokens) + [delta_id] * delta_tokens
        ids = torch.cat([text_ids[:, :8], torch.tensor(placeholders).expand(batch, -1), text_ids[:, 8:]], dim=1)
        pixels = torch.randn(batch, 2, 3, side, side, generator=generator)
        pixels = pixels.flatten(0, 1) if spec["kind"] == "llava" else pixels
        return {
            "input_ids": ids.to(device),
            "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype),
        }

    return model, inputs, {"image_tokens_per_image": image_tokens, "delta_tokens": delta_tokens}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: str, repeats: int = 5) -> float:
    """This machine's dense matmul throughput (FLOP/s): fp32 on CPU, bf16 on CUDA."""
    import torch

    n, dtype = (2048, torch.float32) if device == "cpu" else (8192, torch.bfloat16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = _median_seconds(lambda: a @ b, repeats, device)
    return 2 * n**3 / seconds


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms (ru_maxrss counts the imports too)."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def __enter__(self):
        self.start = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def bytes(self) -> int:
        return self.peak - self.start


def _worker(spec: dict) -> dict:
    """Measures one variant (runs in its own process)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode

    device, repeats = spec["device"], spec["repeats"]
    torch.set_num_threads(spec["threads"]) if spec["threads"] else None
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    memory = _PeakRSS().__enter__()
    model, inputs, shape = _build(spec, device, dtype)
    result = {
        "label": spec["label"],
        "kind": spec["kind"],
        "pooling": spec.get("pooling"),
        **shape,
        "parameters": sum(p.numel() for p in model.parameters()),
    }

    def generate(batch: int, cache: bool):
        batch_inputs = inputs(batch)

        def run():
            with torch.no_grad():
                model.generate(
                    **batch_inputs,
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    do_sample=False,
                    use_cache=cache,
                )

        return run

    for cache in (True, False):
        tag = "cache" if cache else "no_cache"
        result[f"latency_b1_{tag}_s"] = _median_seconds(generate(1, cache), repeats, device)
        if cache or spec["no_cache_throughput"]:  # without a cache, batch 16 recomputes 16x the prompt per token
            result[f"throughput_b{spec['batch']}_{tag}_pairs_per_s"] = spec["batch"] / _median_seconds(
                generate(spec["batch"], cache), repeats, device
            )

    # a stage-2 step: LoRA on the decoder's attention, the rest of the new parts (if any) trained in full
    target = r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
    if spec["kind"] == "onediff":
        from onediff_idc.train.common import present_new_parts

        new_parts = present_new_parts(model)
    else:
        new_parts = ["multi_modal_projector"]
    trained = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=target, modules_to_save=new_parts))
    trained.train()
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-4)
    batch = inputs(TRAIN_BATCH, completion=COMPLETION_TOKENS)
    labels = batch["input_ids"].clone()
    labels[:, :-COMPLETION_TOKENS] = -100

    def step():
        loss = trained(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = _median_seconds(step, repeats, device)
    result |= {
        "train_samples_per_s": TRAIN_BATCH / seconds,
        "train_step_flops": flops,
        "train_flops_per_s": flops / seconds,
    }
    memory.__exit__(None, None, None)  # stops the sampling thread on every device
    result["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if device == "cuda" else memory.bytes
    return result


def _run_isolated(spec: dict) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_worker, (spec,))


def run_bench(
    config: str = "default",
    device: str = "cpu",
    repeats: int = 3,
    batch: int = 16,
    threads: int | None = None,
    no_cache_throughput: bool = False,
    progress: bool = True,
) -> dict:
    import torch
    from tqdm.auto import tqdm

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if config == "full" and device == "cpu":
        raise ValueError("--config full (CLIP ViT-L + a 7B decoder) needs a GPU: use --device cuda")
    arch = architecture(config)
    specs = [{"label": f"onediff pool={p}", "kind": "onediff", "pooling": p} for p in arch["poolings"]]
    specs.append({"label": "llava baseline", "kind": "llava"})
    common = {
        "config": config,
        "device": device,
        "repeats": repeats,
        "batch": batch,
        "threads": threads,
        "no_cache_throughput": no_cache_throughput,
    }
    peak = matmul_peak(device)
    results = []
    for spec in tqdm(specs, desc="benchmarking", unit="model", disable=not progress):
        results.append(_run_isolated({**spec, **common}))
    for result in results:
        result["mfu"] = result["train_flops_per_s"] / peak
    llava = next(r for r in results if r["kind"] == "llava")
    throughput = f"throughput_b{batch}_cache_pairs_per_s"
    for result in results:
        result["kv_cache_speedup_b1"] = result["latency_b1_no_cache_s"] / result["latency_b1_cache_s"]
        no_cache = result.get(f"throughput_b{batch}_no_cache_pairs_per_s")
        result["kv_cache_speedup_throughput"] = result[throughput] / no_cache if no_cache else None
        result["throughput_vs_llava"] = result[throughput] / llava[throughput]
        memory = llava["peak_memory_bytes"]
        result["peak_memory_vs_llava"] = result["peak_memory_bytes"] / memory if memory else None
    return {
        "config": config,
        "device": device,
        "torch_threads": threads or torch.get_num_threads(),
        "repeats": repeats,
        "batch": batch,
        "new_tokens": NEW_TOKENS,
        "matmul_peak_flops_per_s": peak,
        "results": results,
    }


def markdown_table(report: dict) -> str:
    batch = report["batch"]
    lines = [
        f"`onediff bench --config {report['config']} --device {report['device']}` (medians of {report['repeats']}; "
        f"{report['new_tokens']} new tokens; matmul peak {report['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s)",
        "",
        f"| model | LM input tokens from images | latency b1 (s) | pairs/s b{batch} | KV-cache speed-up b1 | "
        "vs LLaVA pairs/s | "
        "train samples/s | MFU | peak memory (MB) | vs LLaVA memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        tokens = 2 * r["image_tokens_per_image"] + r["delta_tokens"]
        throughput = r[f"throughput_b{batch}_cache_pairs_per_s"]
        lines.append(
            f"| {r['label']} | {tokens} | {r['latency_b1_cache_s']:.3f} | {throughput:.2f}"
            f" | {r['kv_cache_speedup_b1']:.2f}x | {r['throughput_vs_llava']:.2f}x | "
            f"{r['train_samples_per_s']:.2f} | {100 * r['mfu']:.1f}% | {r['peak_memory_bytes'] / 2**20:.0f} | "
            f"{r['peak_memory_vs_llava'] or float('nan'):.2f}x |"
        )
    return "\n".join(lines)
