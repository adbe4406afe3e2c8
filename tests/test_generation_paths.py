"""Generation paths transformers' `GenerationTesterMixin` exercises (it is not in transformers' sdist, so CI cannot run
it; see transformers_suites.py): assisted and prompt-lookup decoding, beam search from `inputs_embeds`, sampling
with several return sequences, `logits_to_keep`, text-only prompts that hold placeholder tokens."""

import torch

from tiny import chat_inputs, random_pairs, tiny_model_and_processor

NEW = 6


def inputs(processor, n: int = 1):
    return chat_inputs(processor, random_pairs(n))


def generate(model, batch, **kwargs):
    settings = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    return model.generate(**batch, **{**settings, **kwargs})


def test_assisted_and_prompt_lookup_decoding_equal_greedy(tower_pair):
    # the assistant gets input_ids with placeholder tokens and no pixel_values after the first round
    model, processor = tiny_model_and_processor(tower_pair)
    batch = inputs(processor)
    greedy = generate(model, batch)
    assert len(set(greedy[0, -NEW:].tolist())) > 2
    assistant, _ = tiny_model_and_processor(tower_pair, seed=1)  # a different (worse) draft model
    assert torch.equal(generate(model, batch, assistant_model=assistant), greedy)
    assert torch.equal(generate(model, batch, prompt_lookup_num_tokens=2), greedy)


def test_beam_search_from_inputs_embeds_equals_beam_search_from_ids(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = inputs(processor, n=2)
    from_ids = generate(model, batch, num_beams=3, num_return_sequences=2)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    from_embeds = model.generate(
        inputs_embeds=embeds,
        pixel_values=batch["pixel_values"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        num_beams=3,
        num_return_sequences=2,
        do_sample=False,
    )
    assert from_ids.shape[0] == 4
    assert torch.equal(from_embeds, from_ids[:, -NEW:])  # with inputs_embeds, generate returns the new tokens only


def test_sampling_with_several_sequences_expands_the_pixel_values(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = inputs(processor, n=2)
    torch.manual_seed(0)
    first = generate(model, batch, do_sample=True, num_return_sequences=3, top_k=5)
    torch.manual_seed(0)
    again = generate(model, batch, do_sample=True, num_return_sequences=3, top_k=5)
    assert first.shape[0] == 6 and torch.equal(first, again)


def test_logits_to_keep_keeps_the_last_positions(tower_pair):
    model, processor = tiny_model_and_processor(tower_pair)
    batch = inputs(processor)
    with torch.no_grad():
        full = model(**batch).logits
        last = model(**batch, logits_to_keep=1).logits
    assert last.shape[1] == 1
    torch.testing.assert_close(last, full[:, -1:])


def test_text_only_generation_with_placeholder_tokens_in_the_prompt(tower_pair):
    # LLaVA's rule: without pixel_values the placeholders are ordinary tokens; generation must not raise
    model, processor = tiny_model_and_processor(tower_pair)
    batch = inputs(processor)
    text_only = model.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=NEW, do_sample=False
    )
    with_images = generate(model, batch)
    assert text_only.shape == with_images.shape and not torch.equal(text_only, with_images)
