"""Assembling OneDiff from saved pretrained towers (tiny random ones, saved locally)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, CLIPVisionModel, SiglipConfig, SiglipModel

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from tiny import random_image, tiny_text_config, tiny_tokenizer, tiny_vision


def save_towers(root, pair):
    vision_kind, text_kind = pair.split("-")
    vision_config, image_processor = tiny_vision(vision_kind)
    torch.manual_seed(0)
    if vision_kind == "clip":
        vision = CLIPVisionModel(vision_config)
    else:  # a full dual encoder checkpoint: its vision half is taken
        vision = SiglipModel(
            SiglipConfig(
                vision_config=vision_config.to_dict(),
                text_config={
                    "hidden_size": 32,
                    "num_attention_heads": 4,
                    "num_hidden_layers": 1,
                    "intermediate_size": 64,
                },
            )
        )
    vision.save_pretrained(root / "vision")
    image_processor.save_pretrained(root / "vision")
    tokenizer = tiny_tokenizer(with_placeholders=False)
    lm = AutoModelForCausalLM.from_config(tiny_text_config(text_kind, len(tokenizer)))
    lm.save_pretrained(root / "text")
    tokenizer.save_pretrained(root / "text")
    return vision, lm, len(tokenizer)


@pytest.mark.parametrize("pair", ["clip-llama", "siglip-qwen2"])
def test_from_vision_text_pretrained(tmp_path, pair):
    vision, lm, vocab = save_towers(tmp_path, pair)
    model = OneDiffForConditionalGeneration.from_vision_text_pretrained(
        tmp_path / "vision", tmp_path / "text", num_delta_queries=4, delta_num_hidden_layers=2
    ).eval()
    processor = OneDiffProcessor.from_vision_text_pretrained(tmp_path / "vision", tmp_path / "text", model.config)

    # the towers arrive unchanged; only the placeholder rows are new
    vision_state = (vision if pair == "clip-llama" else vision.vision_model).state_dict()
    tower_state = model.model.vision_tower.state_dict()
    assert vision_state.keys() == tower_state.keys()
    for name, value in vision_state.items():
        assert torch.equal(value, tower_state[name]), name
    decoder_state = model.model.language_model.state_dict()
    for name, value in lm.model.state_dict().items():
        expected = value[:vocab] if name == "embed_tokens.weight" else value
        actual = decoder_state[name][:vocab] if name == "embed_tokens.weight" else decoder_state[name]
        assert torch.equal(expected, actual), name
    assert model.config.text_config.vocab_size == vocab + 2 == len(processor.tokenizer)
    assert (model.config.image_token_id, model.config.delta_token_id) == (vocab, vocab + 1)
    assert (processor.image_token_id, processor.delta_token_id) == (vocab, vocab + 1)
    assert model.config.tie_word_embeddings == (pair == "siglip-qwen2")
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == model.config.tie_word_embeddings
    assert not any(p.is_meta for p in model.parameters())
    assert model.model.delta_module.queries.abs().sum() > 0  # initialised, not left empty

    batch = processor(images=[(random_image(0), random_image(1))], text=["What changed?"], return_tensors="pt")
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > batch["input_ids"].shape[1]

    model.save_pretrained(tmp_path / "onediff")
    reloaded = OneDiffForConditionalGeneration.from_pretrained(tmp_path / "onediff").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reloaded(**batch).logits)


def test_missing_image_processor_is_a_clear_error(tmp_path):
    save_towers(tmp_path, "clip-llama")
    (tmp_path / "vision" / "preprocessor_config.json").unlink()
    model = OneDiffForConditionalGeneration.from_vision_text_pretrained(tmp_path / "vision", tmp_path / "text")
    with pytest.raises((OSError, ValueError)):
        OneDiffProcessor.from_vision_text_pretrained(tmp_path / "vision", tmp_path / "text", model.config)
