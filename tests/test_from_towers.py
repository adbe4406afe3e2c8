"""Assembling OneDiff from saved pretrained towers (tiny random ones, saved locally)."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, CLIPVisionModel, SiglipConfig, SiglipModel

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from tiny import random_image, tiny_text_config, tiny_tokenizer, tiny_vision

REPO = Path(__file__).resolve().parents[1]


def save_towers(root, pair, tokenizer=None):
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
    tokenizer = tokenizer or tiny_tokenizer(with_placeholders=False)
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


# Chat formats of real language-model families, written out here (no hub): OneDiff must train and stop with each
LLAMA2_TEMPLATE = (  # Llama-2-chat's template
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
QWEN2_TEMPLATE = (  # Qwen2-Instruct's template: a default system prompt, ChatML turns
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
BLOCK = "Before: <image>\nAfter: <image>\nChanges: <delta>\n"
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
CHAT_FORMATS = {  # template, the rendered prompt, the answer as trained (ending in the family's end of turn)
    "llama2": (LLAMA2_TEMPLATE, f"<s>[INST] {BLOCK}What changed? [/INST]", " a cube </s>"),
    "vicuna": (None, f"<s>{VICUNA_SYSTEM} USER: {BLOCK}What changed? ASSISTANT:", " a cube</s>"),
    "chatml": (
        None,
        f"<|im_start|>user\n{BLOCK}What changed?<|im_end|>\n<|im_start|>assistant\n",
        "a cube<|im_end|>\n",
    ),
    "qwen2": (
        QWEN2_TEMPLATE,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{BLOCK}What changed?<|im_end|>\n<|im_start|>assistant\n",
        "a cube<|im_end|>\n",
    ),
}


@pytest.mark.parametrize("family", sorted(CHAT_FORMATS))
def test_the_language_models_own_chat_format_is_rendered_trained_and_ends_answers(tmp_path, family):
    from onediff_idc.train.common import ModelArguments, OneDiffCollator, load_model_and_processor

    template, prompt, answer = CHAT_FORMATS[family]
    tokenizer = tiny_tokenizer(with_placeholders=False)
    if family in ("llama2", "vicuna"):  # Llama tokenizers: <s> / </s>
        tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    if family != "chatml":  # the tiny tokenizer's own template is ChatML
        tokenizer.chat_template = template  # Vicuna's tokenizer has none
    save_towers(tmp_path, "clip-llama", tokenizer)
    arguments = {
        "vision_model_name_or_path": str(tmp_path / "vision"),
        "text_model_name_or_path": str(tmp_path / "text"),
    }
    if family == "vicuna":
        with pytest.raises(ValueError, match="has no chat template"):  # at build time, not at the first caption
            OneDiffProcessor.from_vision_text_pretrained(tmp_path / "vision", tmp_path / "text")
        arguments["chat_template_file"] = str(REPO / "train" / "configs" / "onediff_7b" / "vicuna_v1.jinja")
    model, processor = load_model_and_processor(ModelArguments(**arguments))

    user = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What changed?"}],
    }
    assert processor.apply_chat_template([user], add_generation_prompt=True) == prompt
    # training: the loss covers the answer and the family's own end of turn, which generation stops at
    batch = OneDiffCollator(processor)(
        [{"images": [random_image(0), random_image(1)], "prompt": "What changed?", "completion": "a cube"}]
    )
    labels = batch["labels"][0][batch["labels"][0] != -100]
    assert processor.tokenizer.decode(labels) == answer
    end_of_turn = labels[-2] if answer.endswith("\n") else labels[-1]
    eos = model.generation_config.eos_token_id
    assert int(end_of_turn) in ([eos] if isinstance(eos, int) else eos)
    counts = torch.bincount(batch["input_ids"][0], minlength=len(processor.tokenizer))
    assert int(counts[processor.image_token_id]) == 2 * processor.num_image_tokens(32, 32)
    assert int(counts[processor.delta_token_id]) == processor.num_delta_tokens
    # saved and reloaded: the same template, not wrapped twice
    processor.save_pretrained(tmp_path / "saved")
    reloaded = OneDiffProcessor.from_pretrained(tmp_path / "saved")
    assert reloaded.chat_template == processor.chat_template
    assert reloaded.apply_chat_template([user], add_generation_prompt=True) == prompt
