from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from modeling_onediff import OneDiffForConditionalGeneration
from modeling_onediff.modeling_onediff import (
    mirror_distances,
    nearest_patch_distance,
    patch_pixel_statistics,
    pixel_summary,
)
from tiny import random_image, tiny_config, tiny_model_and_processor

PROMPTS = ["What changed?", "Describe the difference between the two images, please, in one sentence."]


def pairs(n: int = 2, offset: int = 0):
    return [(random_image(offset + 2 * i), random_image(offset + 2 * i + 1)) for i in range(n)]


def manual_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


def test_forward_loss_backward_reach_every_trainable_parameter(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    model.train()
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    outputs = model(**batch, labels=batch["input_ids"])
    assert outputs.logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    # The vision tower's output norm / head sit after the hidden states OneDiff reads: frozen by design.
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(name.startswith("model.vision_tower.") for name in frozen)
    assert any("post_layernorm" in name for name in frozen)
    # vision_feature_layer=-2 and delta layers up to 3 of 3: no encoder layer is unused
    assert not any(".layers." in name for name in frozen)


def test_return_dict_false_gives_a_tuple(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    with torch.no_grad():
        as_tuple = model(**batch, labels=batch["input_ids"], return_dict=False)
        as_dict = model(**batch, labels=batch["input_ids"])
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)


def test_trl_collator_batch_scores_only_completion_tokens(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    examples = [
        {"images": list(pair), "prompt": prompt, "completion": completion}
        for pair, prompt, completion in zip(pairs(), PROMPTS, ["the red cube moved.", "nothing has changed"])
    ]
    batch = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)(examples)
    labels = batch.pop("labels")
    placeholder = (batch["input_ids"] == model.config.image_token_id) | (
        batch["input_ids"] == model.config.delta_token_id
    )
    assert (labels[placeholder] == -100).all() and (labels[batch["attention_mask"] == 0] == -100).all()
    for row, completion in enumerate(["the red cube moved.", "nothing has changed"]):
        scored = labels[row][labels[row] != -100]
        assert processor.decode(scored) == completion  # exactly the completion, no prompt token

    with torch.no_grad():
        outputs = model(**batch, labels=labels)
    torch.testing.assert_close(outputs.loss, manual_loss(outputs.logits, labels))


def test_model_never_scores_placeholder_or_padding_positions(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(), text=PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        outputs = model(**batch, labels=batch["input_ids"].clone())  # nothing masked by the caller
    expected = batch["input_ids"].clone()
    expected[(expected == model.config.image_token_id) | (expected == model.config.delta_token_id)] = -100
    expected[batch["attention_mask"] == 0] = -100
    torch.testing.assert_close(outputs.loss, manual_loss(outputs.logits, expected))
    assert not torch.allclose(outputs.loss, manual_loss(outputs.logits, batch["input_ids"]))


def greedy(model, batch, **kwargs):
    out = model.generate(
        **batch,
        max_new_tokens=8,
        min_new_tokens=8,
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs,
    )
    return out.sequences[:, batch["input_ids"].shape[1] :], torch.stack(out.scores, dim=1)


def test_generation_with_and_without_kv_cache_agree(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    cached_tokens, cached_scores = greedy(model, batch, use_cache=True)
    plain_tokens, plain_scores = greedy(model, batch, use_cache=False)
    assert len(set(cached_tokens[0].tolist())) > 2  # a degenerate repeat would make the comparison toothless
    assert torch.equal(cached_tokens, plain_tokens)
    torch.testing.assert_close(cached_scores, plain_scores, atol=1e-4, rtol=1e-4)


def test_batched_left_padded_generation_equals_one_by_one(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    image_pairs = pairs()
    batch = processor(images=image_pairs, text=PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    lengths = batch["attention_mask"].sum(1)
    assert lengths[0] != lengths[1]  # mixed prompt lengths
    batch_tokens, batch_scores = greedy(model, batch)
    for i in range(2):
        single = processor(images=[image_pairs[i]], text=[PROMPTS[i]], return_tensors="pt")
        tokens, scores = greedy(model, single)
        assert torch.equal(tokens[0], batch_tokens[i])
        torch.testing.assert_close(scores[0], batch_scores[i], atol=1e-4, rtol=1e-4)


def test_sdpa_and_eager_attention_agree(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(), text=PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        sdpa = model(**batch).logits
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    assert model.model.vision_tower.config._attn_implementation == "eager"
    with torch.no_grad():
        eager = model(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(sdpa[mask], eager[mask], atol=1e-4, rtol=1e-4)


def test_delta_module_sees_both_images(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    before, after = random_image(10), random_image(11)
    same = processor(images=[(before, before)], text=["x"], return_tensors="pt")["pixel_values"]
    forward = processor(images=[(before, after)], text=["x"], return_tensors="pt")["pixel_values"]
    swapped = forward.flip(1)
    with torch.no_grad():
        identical = model.get_image_features(same)
        out = model.get_image_features(forward)
        out_swapped = model.get_image_features(swapped)
    assert identical.difference_features.abs().max() == 0
    assert out.difference_features.abs().max() > 0
    torch.testing.assert_close(out_swapped.difference_features, -out.difference_features, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out.delta_hidden_states, out_swapped.delta_hidden_states, atol=1e-4)
    # image tokens are per image: swapping the pair swaps their halves
    n = out.pooler_output.shape[1] // 2
    torch.testing.assert_close(out.pooler_output[:, :n], out_swapped.pooler_output[:, n:])


def test_delta_attention_maps_cover_both_patch_grids(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    pixel_values = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")["pixel_values"]
    maps = model.get_delta_attention_maps(pixel_values)
    grid = pixel_values.shape[-1] // model.config.vision_config.patch_size
    assert maps.before.shape == maps.after.shape == maps.difference.shape == (2, grid, grid)
    total = maps.before.sum((1, 2)) + maps.after.sum((1, 2)) + maps.difference.sum((1, 2))
    torch.testing.assert_close(total, torch.ones(2))
    blocks_with_cross = -(-model.config.delta_num_hidden_layers // model.config.cross_attention_frequency)
    assert len(maps.cross_attentions) == blocks_with_cross


def test_image_token_pooling_shrinks_the_sequence():
    model, processor = tiny_model_and_processor(image_token_pooling=2)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 2 * 2 * 2  # 4x4 grid -> 2x2 per image
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


def test_mismatched_placeholders_and_bad_pixel_values_raise(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    image_positions = (batch["input_ids"][0] == model.config.image_token_id).nonzero()[:, 0]
    broken = batch["input_ids"].clone()
    broken[0, image_positions[0]] = 5
    with pytest.raises(ValueError, match=r"tokens: \d+, features: \d+"):
        model(input_ids=broken, pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"])
    with pytest.raises(ValueError, match=r"\(batch_size, 2, channels, height, width\)"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:, 0])


def test_placeholders_without_pixel_values_are_embedded_as_text(tower_pair):
    # LLaVA's rule, which generation relies on (assistant models, beam search from inputs_embeds, later steps)
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    with torch.no_grad():
        text_only = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        hidden = model.model.language_model(
            inputs_embeds=model.get_input_embeddings()(batch["input_ids"]), attention_mask=batch["attention_mask"]
        ).last_hidden_state
        with_images = model(**batch).logits
    torch.testing.assert_close(text_only, model.lm_head(hidden))
    assert not torch.allclose(text_only, with_images, atol=1e-3)


def test_inputs_embeds_path_matches_input_ids(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    with torch.no_grad():
        from_ids = model(**batch).logits
        embeds = model.get_input_embeddings()(batch["input_ids"])
        from_embeds = model(
            inputs_embeds=embeds, pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"]
        ).logits
    torch.testing.assert_close(from_ids, from_embeds)


def test_gradient_checkpointing_gives_the_same_gradients(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    model.train()
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")

    def grads():
        model.zero_grad()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    reference = grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert all(block.gradient_checkpointing for block in model.model.delta_module.blocks)
    checkpointed = grads()
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(reference[name], checkpointed[name], atol=1e-5, rtol=1e-4)


def test_tied_embeddings_and_resizing(tower_pair):
    model, _ = tiny_model_and_processor(tower_pair)
    tied = model.config.tie_word_embeddings
    assert tied == (tower_pair == "siglip-qwen2")
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == tied
    vocab = model.config.text_config.vocab_size
    model.resize_token_embeddings(vocab + 3)
    assert model.lm_head.weight.shape[0] == model.get_input_embeddings().weight.shape[0] == vocab + 3
    assert model.config.text_config.vocab_size == vocab + 3
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == tied


def test_no_split_modules_cover_delta_and_tower_layers():
    model, _ = tiny_model_and_processor()
    assert {"OneDiffDeltaBlock", "LlamaDecoderLayer", "CLIPEncoderLayer"} <= set(model._no_split_modules)


def test_missing_weights_are_initialised_on_load(tmp_path):
    model, _ = tiny_model_and_processor()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    kept = {k: v for k, v in state.items() if not k.startswith("model.delta_module.")}
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = OneDiffForConditionalGeneration.from_pretrained(tmp_path)
    for name, tensor in loaded.state_dict().items():
        assert tensor.device.type == "cpu", name
        assert torch.isfinite(tensor).all(), name
    queries = loaded.model.delta_module.queries
    assert 0.5 * model.config.initializer_range < queries.std() < 2 * model.config.initializer_range
    torch.testing.assert_close(
        loaded.model.vision_tower.state_dict()["embeddings.patch_embedding.weight"],
        model.model.vision_tower.state_dict()["embeddings.patch_embedding.weight"],
    )


def test_static_cache_inputs_embeds_and_beam_generation(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    reference, _ = greedy(model, batch)
    static, _ = greedy(model, batch, cache_implementation="static")
    assert torch.equal(reference, static)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    from_embeds = model.generate(
        inputs_embeds=embeds,
        pixel_values=batch["pixel_values"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=8,
        min_new_tokens=8,
        do_sample=False,
    )
    assert torch.equal(from_embeds, reference)  # with inputs_embeds, generate returns only the new tokens
    beams = model.generate(**batch, max_new_tokens=4, num_beams=2, num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 2


def test_dinov2_tower_with_cls_token_and_interpolated_positions():
    """The default model's tower family: CLS token dropped, position embeddings interpolated to a smaller input."""
    from transformers import BitImageProcessorPil, Dinov2Config

    from modeling_onediff import OneDiffProcessor
    from tiny import tiny_config, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    vision = Dinov2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=518, patch_size=14
    )
    config = tiny_config(vision_config=vision, tokenizer=tokenizer, image_token_pooling=2)
    model = OneDiffForConditionalGeneration(config)
    processor = OneDiffProcessor(
        image_processor=BitImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}),
        tokenizer=tokenizer,
        patch_size=14,
        image_token_pooling=2,
        num_delta_tokens=config.num_delta_queries,
    )
    batch = processor(images=pairs(1), text=PROMPTS[:1], return_tensors="pt")
    assert int((batch["input_ids"] == config.image_token_id).sum()) == 2 * 4  # 4x4 patches pooled to 2x2
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    maps = model.get_delta_attention_maps(batch["pixel_values"])
    assert maps.before.shape == (1, 4, 4)


def test_model_without_delta_module_sees_only_image_tokens(tmp_path):
    """`use_delta_module=False` is the LLaVA-style ablation: no delta parameters, no delta tokens, still trains,
    generates and round-trips."""
    model, processor = tiny_model_and_processor(use_delta_module=False)
    assert model.model.delta_module is None and model.model.delta_projector is None
    assert not any("delta" in name for name in model.state_dict())
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    assert not (batch["input_ids"] == processor.delta_token_id).any()
    model.train()
    outputs = model(**batch, labels=batch["input_ids"])
    outputs.loss.backward()
    assert model.model.image_projector.linear_1.weight.grad is not None
    assert outputs.delta_hidden_states is None
    model.eval()
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = OneDiffForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.use_delta_module is False and reloaded.model.delta_module is None
    assert torch.equal(reloaded.generate(**batch, max_new_tokens=5, do_sample=False), generated)
    with pytest.raises(ValueError, match="no delta module"):
        model.get_delta_attention_maps(batch["pixel_values"])
    # the images still matter: another after image changes the logits
    other = processor(images=pairs(offset=10), text=PROMPTS, padding=True, return_tensors="pt")
    assert not torch.allclose(model(**batch).logits[:, -1], model(**other).logits[:, -1])


def test_difference_prior_points_the_delta_module_at_the_changed_patch():
    model, processor = tiny_model_and_processor("clip-llama", delta_difference_prior=1.0)
    scale = model.model.delta_module.difference_prior_scale
    assert torch.equal(scale.detach(), torch.ones_like(scale))  # initialised from the config
    before = np.array(random_image(3, size=32))
    after = before.copy()
    after[8:16, 16:24] = 255 - after[8:16, 16:24]  # one patch of the 4x4 grid changes
    pixels = processor(images=[(Image.fromarray(before), Image.fromarray(after))], text=["x"], return_tensors="pt")[
        "pixel_values"
    ]
    identical = processor(images=[(Image.fromarray(before), Image.fromarray(before))], text=["x"], return_tensors="pt")[
        "pixel_values"
    ]

    def on_changed_patch(strength: float) -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            scale.fill_(strength)
            maps = model.get_delta_attention_maps(pixels)
            same = model.get_image_features(identical).delta_hidden_states
        share = maps.before[0, 1, 2] + maps.after[0, 1, 2] + maps.difference[0, 1, 2]
        return float(share), same

    off, same_off = on_changed_patch(0.0)
    on, same_on = on_changed_patch(4.0)
    assert on > 2 * off  # the changed patch draws more attention with the prior
    torch.testing.assert_close(same_on, same_off)  # identical images: no |B-A|, no bias at all


def test_alignment_tokens_tell_a_left_right_mirror_from_a_top_bottom_one():
    model, _ = tiny_model_and_processor("clip-llama", delta_alignment=True)
    module = model.model.delta_module
    layers, width = len(model.config.delta_feature_layers), model.config.vision_config.hidden_size
    before = torch.randn(1, layers, 16, width, generator=torch.Generator().manual_seed(0))
    grid = before.unflatten(2, (4, 4))
    mirrored, upside_down = grid.flip(3).flatten(2, 3), grid.flip(2).flatten(2, 3)
    for after, matrix in ((before, [1, 0, 0, 1]), (mirrored, [-1, 0, 0, 1]), (upside_down, [1, 0, 0, -1])):
        inputs = module.prepare_inputs(before, after, (4, 4))
        expected = torch.tensor(matrix, dtype=torch.float32).expand(1, layers, 4)
        torch.testing.assert_close(inputs.alignment[..., :4], expected, atol=0.05, rtol=0)
    # one token per layer after the patches; the mirror images read differently, and the projection learns
    context, _ = module.build_context(inputs)
    assert context.shape[1] == layers * 3 * 16 + layers
    other, _ = module.build_context(module.prepare_inputs(before, mirrored, (4, 4)))
    assert not torch.allclose(context[:, -layers:], other[:, -layers:], atol=1e-3)
    module.attend(inputs).last_hidden_state.square().sum().backward()
    assert module.alignment_projection.weight.grad.abs().sum() > 0


def test_global_difference_tokens_carry_each_layers_global_change():
    model, processor = tiny_model_and_processor("clip-llama", delta_global_difference=True, delta_difference_prior=1.0)
    module = model.model.delta_module
    layers = len(model.config.delta_feature_layers)

    def context(before, after):
        pixels = processor(images=[(before, after)], text=["x"], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            hidden = model.model.vision_tower(pixels.flatten(0, 1), output_hidden_states=True).hidden_states
        features = torch.stack([hidden[i][:, 1:] for i in model.config.resolved_delta_feature_layers], dim=1)  # no CLS
        inputs = module.prepare_inputs(features[:1], features[1:], (4, 4))
        built, _ = module.build_context(inputs)
        return built, module.difference_prior(inputs.relative)

    same_a, prior_a = context(random_image(1, 32), random_image(1, 32))
    same_b, _ = context(random_image(2, 32), random_image(2, 32))
    brighter, prior = context(random_image(1, 32), Image.eval(random_image(1, 32), lambda v: min(255, v + 60)))
    assert same_a.shape[1] == layers * 3 * 16 + layers  # A, B, B-A of 16 patches per layer, then one token per layer
    torch.testing.assert_close(same_a[:, -layers:], same_b[:, -layers:])  # no change: the same global tokens
    assert not torch.allclose(brighter[:, -layers:], same_a[:, -layers:], atol=1e-3)
    assert prior.shape[-1] == same_a.shape[1] and (prior[..., -layers:] == 0).all() and (prior_a == 0).all()
    # end to end: it trains (every new parameter gets a gradient) and its attention maps keep the patch grid
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    model.train()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert module.global_projection.weight.grad is not None and module.global_norm.weight.grad is not None
    maps = model.get_delta_attention_maps(batch["pixel_values"])
    assert (
        maps.before.shape == (2, 4, 4) and float((maps.before + maps.after + maps.difference).sum(dim=(1, 2)).max()) < 1
    )


def test_zoom_keeps_the_most_changed_patches_and_maps_them_back():
    model, processor = tiny_model_and_processor(
        "clip-llama", delta_zoom_patches=3, delta_global_difference=True, delta_difference_prior=1.0
    )
    module = model.model.delta_module
    before = np.array(random_image(5, size=32))
    after = before.copy()
    changed = {(0, 1): 255, (2, 3): 200, (3, 0): 160}  # (row, column) of the 4x4 grid: three patches change
    for (row, column), value in changed.items():
        after[row * 8 : row * 8 + 8, column * 8 : column * 8 + 8] = value
    batch = processor(images=[(Image.fromarray(before), Image.fromarray(after))], text=["x"], return_tensors="pt")
    with torch.no_grad():
        visual = model.get_image_features(batch["pixel_values"], output_attentions=True)
    kept = visual.delta_context_patches[0].tolist()
    assert kept == sorted(kept) and len(kept) == 3
    assert len({row * 4 + column for row, column in changed} & set(kept)) >= 2  # the tower mixes patches a little
    layers = len(model.config.delta_feature_layers)
    assert visual.delta_cross_attentions[0].shape[-1] == layers * 3 * 3 + layers  # 3 patches x 3 roles + global
    maps = model.get_delta_attention_maps(batch["pixel_values"])
    outside = torch.ones(16, dtype=torch.bool)
    outside[kept] = False
    assert maps.change.shape == (1, 4, 4) and float(maps.change.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(maps.change.flatten(1)[0, outside].abs().max()) == 0.0
    # it trains: the position embeddings of the kept patches get a gradient, the others none
    model.train()
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert module.zoom_row_embeddings.grad.abs().sum(-1).count_nonzero() <= 4  # rows of a 4x4 grid
    assert module.zoom_row_embeddings.grad[4:].abs().max() == 0
    with pytest.raises(ValueError, match="delta_zoom_patches"):
        tiny_config("clip-llama", delta_zoom_patches=-1)


def test_shift_tolerance_tells_a_moved_camera_from_a_changed_patch():
    torch.manual_seed(0)
    before = torch.randn(1, 1, 6, 6, 8)  # (batch, layer, rows, columns, channels)
    after = torch.roll(before, shifts=1, dims=3)  # the camera moved one column: every patch has a neighbour match
    after[0, 0, 2, 3] = torch.randn(8) * 3  # and one patch really changed
    flat_before, flat_after = before.flatten(2, 3), after.flatten(2, 3)
    distance = nearest_patch_distance(flat_after, flat_before, (6, 6), radius=1).view(6, 6)
    changed = torch.zeros(6, 6, dtype=torch.bool)
    changed[2, 3] = True
    changed[:, 0] = True  # the column that wrapped around from the far edge has no match either
    assert distance[~changed].abs().max() < 1e-6 and distance[2, 3] > 1

    def delta_module(shift_tolerance: int):
        model = tiny_model_and_processor("clip-llama", delta_zoom_patches=1, delta_shift_tolerance=shift_tolerance)[0]
        return model.model.delta_module

    module = delta_module(1)
    tolerant = module.relative_change(flat_before, flat_after, (6, 6))
    strict = delta_module(0).relative_change(flat_before, flat_after, (6, 6))
    assert int(module.zoom(tolerant, (6, 6))) == 2 * 6 + 3  # the zoom keeps the changed patch, not the moved ones
    assert (strict > 0.5).sum() > 20  # same-position |B-A| sees change nearly everywhere
    identical = module.relative_change(flat_before, flat_before, (6, 6))
    assert identical.abs().max() == 0
    with pytest.raises(ValueError, match="delta_shift_tolerance"):
        tiny_config("clip-llama", delta_shift_tolerance=-1)


def test_pixel_statistics_are_each_patchs_colour_mean_and_spread():
    pixels = torch.randn(2, 3, 17, 16, generator=torch.Generator().manual_seed(0))  # a 17th row: not a whole patch
    statistics = patch_pixel_statistics(pixels, 8)
    assert statistics.shape == (2, 4, 6)  # a 2x2 grid, mean and std of 3 channels
    array = pixels.numpy()
    for image in range(2):
        for patch, (row, column) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            block = array[image, :, row * 8 : row * 8 + 8, column * 8 : column * 8 + 8].reshape(3, -1)
            expected = np.concatenate([block.mean(1), block.std(1)])
            np.testing.assert_allclose(statistics[image, patch].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_pixel_detail_is_the_spread_around_each_pixels_neighbourhood_and_reaches_every_query():
    pixels = torch.randn(2, 3, 17, 16, generator=torch.Generator().manual_seed(0))
    statistics = patch_pixel_statistics(pixels, 8, detail=True)
    assert statistics.shape == (2, 4, 9)  # means, spreads, then details of 3 channels
    torch.testing.assert_close(statistics[..., :6], patch_pixel_statistics(pixels, 8))  # the first six as before
    array = np.pad(pixels.numpy()[:, :, :16], ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")  # the whole patches
    neighbourhood = sum(array[:, :, dy : dy + 16, dx : dx + 16] for dy in range(3) for dx in range(3)) / 9
    high = pixels.numpy()[:, :, :16] - neighbourhood  # the slow, obvious way
    for patch, (row, column) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        block = high[:, :, row * 8 : row * 8 + 8, column * 8 : column * 8 + 8].reshape(2, 3, -1)
        np.testing.assert_allclose(statistics[:, patch, 6:].numpy(), block.std(-1), rtol=1e-4, atol=1e-5)
    # a sharpening multiplies the detail more than the spread (which shading dominates); a flat shift moves neither
    shading = torch.linspace(-1, 1, 32).expand(1, 3, 32, 32) + 0.05 * torch.randn(1, 3, 32, 32)
    sharpened = shading + 2.0 * (shading - F.avg_pool2d(F.pad(shading, (1,) * 4, mode="replicate"), 3, stride=1))
    pair = torch.stack([patch_pixel_statistics(shading, 8, True), patch_pixel_statistics(sharpened, 8, True)], 1)
    summary = pixel_summary(pair, 3)[0]
    assert summary.shape == (9,) and (summary[6:] > 2 * summary[3:6]).all() and (summary[6:] > 0.5).all()
    shifted = torch.stack([patch_pixel_statistics(shading, 8, True), patch_pixel_statistics(shading + 0.3, 8, True)], 1)
    torch.testing.assert_close(pixel_summary(shifted, 3)[0], torch.tensor([0.3] * 3 + [0.0] * 6), atol=1e-5, rtol=0)

    model, processor = tiny_model_and_processor(
        "clip-llama", delta_pixel_statistics=True, delta_pixel_detail=True, delta_zoom_patches=2
    )
    module = model.model.delta_module
    layers, width = len(model.config.delta_feature_layers), model.config.vision_config.hidden_size
    features = torch.randn(1, layers, 16, width, generator=torch.Generator().manual_seed(0))
    statistics = torch.randn(1, 2, 16, 9, generator=torch.Generator().manual_seed(1)).abs()
    inputs = module.prepare_inputs(features, features + 0.1, (4, 4), statistics)
    torch.testing.assert_close(inputs.pixel_summary, pixel_summary(statistics, 3))  # every patch, not the zoom's
    with torch.no_grad():
        start = module.attend(inputs).last_hidden_state
        other = module.attend(replace(inputs, pixel_summary=-inputs.pixel_summary)).last_hidden_state
    assert not torch.allclose(start, other)
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert module.pixel_summary_projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs `delta_pixel_statistics`"):
        tiny_config("clip-llama", delta_pixel_detail=True)
    with pytest.raises(ValueError, match="must be a bool"):
        tiny_config("clip-llama", delta_pixel_statistics=True, delta_pixel_detail=1)


def test_mirror_statistics_name_the_axis_of_a_flip():
    image = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))  # a 4x6 grid of 8-pixel patches
    flips = {"none": image, "left-right": image.flip(-1), "top-bottom": image.flip(-2), "both": image.flip(-2, -1)}
    for expected, after in enumerate(flips.values()):
        statistics = torch.stack([patch_pixel_statistics(image, 8), patch_pixel_statistics(after, 8)], dim=1)
        distances = mirror_distances(statistics, (4, 6))[0]
        assert distances.argmin() == expected and distances[expected] == pytest.approx(np.log(1e-3), abs=1e-3)
        assert (distances.sort().values[1] > np.log(0.1)).all()  # every other mirror is far
    # a recolouring moves all four alike: no mirror explains it
    recoloured = torch.stack([patch_pixel_statistics(image, 8), patch_pixel_statistics(image + 0.5, 8)], dim=1)
    distances = mirror_distances(recoloured, (4, 6))[0]
    assert distances[0] == pytest.approx(np.log(0.5 * 3 / 6 + 1e-3), abs=1e-4)  # the means move by 0.5, spreads not

    model, processor = tiny_model_and_processor(
        "clip-llama",
        delta_pixel_statistics=True,
        delta_mirror_statistics=True,
        delta_zoom_patches=2,
        delta_difference_prior=1.0,
    )
    module = model.model.delta_module
    layers, width = len(model.config.delta_feature_layers), model.config.vision_config.hidden_size
    features = torch.randn(1, layers, 16, width, generator=torch.Generator().manual_seed(0))
    pixels = torch.randn(1, 2, 16, 6, generator=torch.Generator().manual_seed(1))
    inputs = module.prepare_inputs(features, features + 0.1, (4, 4), pixels)
    torch.testing.assert_close(inputs.mirror, mirror_distances(pixels, (4, 4)))  # from every patch, not the zoom's
    context, _ = module.build_context(inputs)
    assert context.shape[1] == layers * 3 * 2 + 2  # no token of its own: the queries start from it
    with torch.no_grad():
        start = module.attend(inputs).last_hidden_state
        other = module.attend(replace(inputs, mirror=inputs.mirror.flip(-1))).last_hidden_state
    assert not torch.allclose(start, other)
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert module.mirror_projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs `delta_pixel_statistics`"):
        tiny_config("clip-llama", delta_mirror_statistics=True)
    with pytest.raises(ValueError, match="must be a bool"):
        tiny_config("clip-llama", delta_pixel_statistics=True, delta_mirror_statistics=1)


def test_alignment_queries_start_every_query_from_which_way_b_turned():
    """With `delta_alignment_queries`, every query starts from a projection of every layer's alignment: a turn the
    other way (the map's antisymmetric part negated) changes every delta token, no attention needed."""
    model, processor = tiny_model_and_processor(
        "clip-llama", delta_alignment=True, delta_alignment_queries=True, delta_zoom_patches=2
    )
    module = model.model.delta_module
    layers, width = len(model.config.delta_feature_layers), model.config.vision_config.hidden_size
    assert module.alignment_query_projection.in_features == layers * 8
    features = torch.randn(1, layers, 16, width, generator=torch.Generator().manual_seed(0))
    inputs = module.prepare_inputs(features, features.roll(1, dims=2), (4, 4))
    turned = inputs.alignment.clone()
    turned[..., 1:3] = inputs.alignment[..., [2, 1]]  # M's off-diagonal swapped: the turn the other way
    with torch.no_grad():
        start = module.attend(inputs).last_hidden_state
        other = module.attend(replace(inputs, alignment=turned)).last_hidden_state
        torch.nn.init.zeros_(module.alignment_query_projection.weight)
        torch.nn.init.zeros_(module.alignment_query_projection.bias)
        torch.nn.init.zeros_(module.alignment_projection.weight)  # nor through the context tokens
        blind = (
            module.attend(inputs).last_hidden_state,
            module.attend(replace(inputs, alignment=turned)).last_hidden_state,
        )
    assert not torch.allclose(start, other)
    torch.testing.assert_close(*blind)  # the difference came from the alignment alone
    model, processor = tiny_model_and_processor("clip-llama", delta_alignment=True, delta_alignment_queries=True)
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert model.model.delta_module.alignment_query_projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs `delta_alignment`"):
        tiny_config("clip-llama", delta_alignment_queries=True)
    with pytest.raises(ValueError, match="must be a bool"):
        tiny_config("clip-llama", delta_alignment=True, delta_alignment_queries=1)


def test_pixel_statistics_point_the_zoom_at_a_recoloured_patch_the_features_miss():
    model, processor = tiny_model_and_processor(
        "clip-llama",
        delta_pixel_statistics=True,
        delta_zoom_patches=2,
        delta_difference_prior=1.0,
        delta_global_difference=True,
        delta_alignment=True,
    )
    module = model.model.delta_module
    layers, width = len(model.config.delta_feature_layers), model.config.vision_config.hidden_size
    features = torch.randn(1, layers, 16, width, generator=torch.Generator().manual_seed(0))
    features[:, :, 9] += 0.5  # one patch's features change a little (as light jitter moves them) ...
    pixels = torch.randn(1, 1, 16, 6, generator=torch.Generator().manual_seed(1)).expand(1, 2, 16, 6).clone()
    pixels[0, 1, 6, :3] += 2.0  # ... and another patch's colour changes plainly, its features not at all
    moved = features.clone()
    moved[:, :, 9] += 0.5
    inputs = module.prepare_inputs(features, moved, (4, 4), pixels)
    assert inputs.patches.tolist() == [[6, 9]]  # both: the pixel change joins the zoom as one more layer
    # how much it changed, too: the distance of the statistics, not only their change relative to the other patches
    torch.testing.assert_close(inputs.pixel_distance, torch.tensor([[2.0 * 3**0.5, 0.0]]))
    without = module.prepare_inputs(features, moved, (4, 4), pixels[:, :1].expand(1, 2, 16, 6))
    assert 6 not in without.patches.tolist()[0]
    # one pixel token per kept patch, after the patch tokens; the prior points at the recoloured one
    context, _ = module.build_context(inputs)
    assert context.shape[1] == layers * 3 * 2 + 2 + 2 * layers
    prior = module.difference_prior(inputs.relative, inputs.pixel_change)[0, 0, 0]
    assert prior.shape[-1] == context.shape[1]
    pixel_prior = prior[layers * 3 * 2 : layers * 3 * 2 + 2]
    assert pixel_prior[0] > 1 and pixel_prior[1] < 0.5 and (prior[-2 * layers :] == 0).all()
    identical = module.prepare_inputs(features, features, (4, 4), pixels[:, :1].expand(1, 2, 16, 6))
    assert identical.pixel_change.abs().max() == 0
    with pytest.raises(ValueError, match="pixel statistics"):
        module.prepare_inputs(features, moved, (4, 4))
    with pytest.raises(ValueError, match="delta_pixel_statistics"):
        tiny_config("clip-llama", delta_pixel_statistics="yes")

    # end to end from images: the model computes the statistics from its pixel values, and the projection learns
    batch = processor(images=pairs(), text=PROMPTS, padding=True, return_tensors="pt")
    expected = patch_pixel_statistics(batch["pixel_values"].flatten(0, 1), 8).unflatten(0, (2, 2))
    with torch.no_grad():
        visual = model.get_image_features(batch["pixel_values"])
        tower = model.model.vision_tower(batch["pixel_values"].flatten(0, 1), output_hidden_states=True).hidden_states
        states = [tower[i][:, 1:].unflatten(0, (2, 2)) for i in model.config.resolved_delta_feature_layers]  # no CLS
        direct = module([s[:, 0] for s in states], [s[:, 1] for s in states], pixel_statistics=expected)
    torch.testing.assert_close(visual.delta_hidden_states, model.model.delta_projector(direct.last_hidden_state))
    # the change map counts the attention on the pixel tokens too: every patch token's share, summed, is all there is
    maps = model.get_delta_attention_maps(batch["pixel_values"])
    assert maps.pixels.shape == (2, 4, 4) and float(maps.pixels.sum()) > 0
    attended = maps.before + maps.after + maps.difference + maps.pixels
    assert float(attended.sum(dim=(1, 2)).max()) < 1  # the rest went to the global and alignment tokens
    torch.testing.assert_close(maps.change, attended / attended.sum(dim=(1, 2), keepdim=True))
    model.train()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert module.pixel_projection.weight.grad.abs().sum() > 0 and module.pixel_prior_scale.grad is not None
