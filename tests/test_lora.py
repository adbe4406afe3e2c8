"""LoRA (peft) on the language model: train, save the adapter, reload it onto the base model."""

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from modeling_onediff import OneDiffForConditionalGeneration
from tiny import random_image, tiny_model_and_processor

DECODER_ATTENTION = r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"


def test_lora_on_the_decoder_trains_saves_and_reloads(tmp_path):
    model, processor = tiny_model_and_processor("siglip-qwen2")
    model.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=DECODER_ATTENTION))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert not any("delta_module" in n for n in trainable)  # its q_proj/v_proj are not the decoder's

    batch = processor(images=[(random_image(0), random_image(1))], text=["What changed?"], return_tensors="pt")
    peft_model.train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        loss = peft_model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    peft_model.eval()
    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    base = OneDiffForConditionalGeneration.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        base_logits = base(**batch).logits
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        torch.testing.assert_close(reloaded(**batch).logits, peft_model(**batch).logits)
    assert not torch.allclose(reloaded(**batch).logits, base_logits)
    generated = reloaded.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > batch["input_ids"].shape[1]
