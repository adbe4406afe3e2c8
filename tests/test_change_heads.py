"""`delta_change_fields`: the discrete bottleneck between the delta module and the language model, and
`use_image_tokens=False` (the language model reads the delta tokens alone)."""

import pytest
import torch
from test_from_towers import save_towers
from transformers import pipeline

from modeling_onediff import OneDiffConfig, OneDiffForConditionalGeneration, OneDiffProcessor
from tiny import chat_inputs, random_image, tiny_config, tiny_model_and_processor

FIELDS = {"color": ["red", "blue", "light_gray"], "shape": ["cube", "sphere"], "type": ["add", "color", "none"]}
OFFSETS = torch.tensor([0, 4, 7])  # each field's first row in the value table: 3 + 1, 2 + 1, 3 + 1 classes


def bottleneck_model(**overrides):
    return tiny_model_and_processor(delta_change_fields=FIELDS, use_image_tokens=False, **overrides)


def pairs(n: int, offset: int = 0):
    return [(random_image(offset + 2 * i), random_image(offset + 2 * i + 1)) for i in range(n)]


def test_only_the_field_tokens_reach_the_language_model():
    model, processor = bottleneck_model()
    assert list(model.config.delta_change_fields) == ["color", "shape", "type"]
    assert list(tiny_config(delta_change_fields=dict(reversed(FIELDS.items()))).delta_change_fields) == sorted(FIELDS)
    overridden = tiny_config().with_overrides(delta_change_fields=dict(reversed(FIELDS.items())))
    assert list(overridden.delta_change_fields) == sorted(FIELDS)  # overrides are checked (and ordered) too
    with pytest.raises(ValueError, match="need as many delta queries"):
        tiny_config().with_overrides(delta_change_fields={f"f{i}": ["a"] for i in range(5)})
    assert model.model.image_projector is None and model.model.delta_projector is None
    assert not any(name.startswith(("model.image_projector", "model.delta_projector")) for name in model.state_dict())
    batch = chat_inputs(processor, pairs(2))
    ids = batch["input_ids"]
    assert not (ids == model.config.image_token_id).any()
    assert ((ids == model.config.delta_token_id).sum(1) == len(FIELDS)).all()

    outputs = model(**batch)
    visual = outputs.image_outputs
    assert [tuple(s.shape) for s in visual.change_logits] == [(2, len(v) + 1) for v in FIELDS.values()]
    chosen = torch.stack([scores.argmax(-1) for scores in visual.change_logits], dim=1)
    torch.testing.assert_close(visual.delta_hidden_states, model.model.change_heads.embed(chosen))
    # delta token k is row offset_k + class_k of the value table
    torch.testing.assert_close(
        visual.delta_hidden_states, model.model.change_heads.value_embeddings.weight[chosen + OFFSETS]
    )


def test_the_caption_depends_on_the_images_only_through_the_chosen_values():
    model, processor = bottleneck_model()
    first, second = chat_inputs(processor, pairs(1)), chat_inputs(processor, pairs(1, offset=10))
    labels = torch.tensor([[1, 0, 1]])
    with torch.no_grad():
        forced = [model(**batch, change_labels=labels).logits for batch in (first, second)]
        text_only = model(input_ids=first["input_ids"], attention_mask=first["attention_mask"], change_labels=labels)
        other_change = model(**first, change_labels=torch.tensor([[3, 2, 3]])).logits
    torch.testing.assert_close(forced[0], forced[1])  # the same change, whatever the pixels
    torch.testing.assert_close(forced[0], text_only.logits)  # so no image is needed to train the phrasing
    assert not torch.allclose(forced[0][:, -1], other_change[:, -1])  # and the language model reads the tokens


def test_change_heads_learn_and_the_value_table_gets_the_language_models_gradient():
    model, processor = bottleneck_model()
    model.train()
    batch = chat_inputs(processor, pairs(2))
    labels = torch.tensor([[0, 2, 0], [3, 1, 2]])
    outputs = model(**batch, change_labels=labels, labels=batch["input_ids"])
    heads = model.model.change_heads
    change_loss = sum(
        torch.nn.functional.cross_entropy(scores, labels[:, k])
        for k, scores in enumerate(outputs.image_outputs.change_logits)
    )
    (outputs.loss + change_loss).backward()
    assert heads.classifiers[0].weight.grad.abs().sum() > 0
    assert model.model.delta_module.queries.grad.abs().sum() > 0
    used = labels + OFFSETS
    grad = heads.value_embeddings.weight.grad
    assert (grad[used.flatten()].abs().sum(-1) > 0).all()
    unused = sorted(set(range(grad.shape[0])) - set(used.flatten().tolist()))
    assert (grad[unused] == 0).all()


def test_bad_change_labels_and_configs_are_clear_errors():
    model, processor = bottleneck_model()
    batch = chat_inputs(processor, pairs(1))
    with pytest.raises(ValueError, match="shape"):
        model(**batch, change_labels=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="outside its field"):
        model(**batch, change_labels=torch.tensor([[0, 4, 0]]))  # color has 3 values + absent: 0..3
    plain, plain_processor = tiny_model_and_processor()
    with pytest.raises(ValueError, match="needs a model with `delta_change_fields`"):
        plain(**chat_inputs(plain_processor, pairs(1)), change_labels=torch.tensor([[0, 0, 0]]))
    with_images, images_processor = tiny_model_and_processor(delta_change_fields=FIELDS)
    text = chat_inputs(images_processor, pairs(1))
    with pytest.raises(ValueError, match="use_image_tokens=False"):
        with_images(input_ids=text["input_ids"], change_labels=torch.tensor([[0, 0, 0]]))
    # image tokens given to a model that has none
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(**text)

    with pytest.raises(ValueError, match="distinct strings"):
        tiny_config(delta_change_fields={"type": ["add", "add"]})
    with pytest.raises(ValueError, match="non-empty dict"):
        tiny_config(delta_change_fields=["type"])
    with pytest.raises(ValueError, match="need as many delta queries"):
        tiny_config(delta_change_fields={f"f{i}": ["a"] for i in range(5)})  # 4 queries
    with pytest.raises(ValueError, match="needs the delta module"):
        tiny_config(delta_change_fields=FIELDS, use_delta_module=False)
    with pytest.raises(ValueError, match="would see nothing"):
        tiny_config(use_image_tokens=False, use_delta_module=False)


def test_round_trip_generation_and_pipeline(tmp_path):
    model, processor = bottleneck_model()
    batch = chat_inputs(processor, pairs(2))
    expected = model.generate(**batch, max_new_tokens=6, do_sample=False)
    uncached = model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(expected, uncached)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = OneDiffForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.delta_change_fields == FIELDS and reloaded.config.use_image_tokens is False
    assert torch.equal(reloaded.generate(**batch, max_new_tokens=6, do_sample=False), expected)
    reloaded_processor = OneDiffProcessor.from_pretrained(tmp_path)
    assert (reloaded_processor.num_delta_tokens, reloaded_processor.use_image_tokens) == (3, False)

    captioner = pipeline("image-difference-captioning", model=str(tmp_path), trust_remote_code=True)
    before, after = pairs(1)[0]
    result = captioner({"before": before, "after": after}, max_new_tokens=4, return_change_map=True)
    assert isinstance(result["generated_text"], str) and result["change_map"].shape == (4, 4)


def test_towers_assembly_starts_each_value_at_its_words_embedding(tmp_path):
    save_towers(tmp_path, "clip-llama")
    model = OneDiffForConditionalGeneration.from_vision_text_pretrained(
        tmp_path / "vision",
        tmp_path / "text",
        num_delta_queries=4,
        delta_num_hidden_layers=2,
        delta_change_fields=FIELDS,
        use_image_tokens=False,
    )
    processor = OneDiffProcessor.from_vision_text_pretrained(tmp_path / "vision", tmp_path / "text", model.config)
    assert isinstance(model.config, OneDiffConfig) and processor.num_delta_tokens == 3
    table, words = model.model.change_heads.value_embeddings.weight, model.get_input_embeddings().weight
    for row, word in [(2, " light gray"), (3, " none"), (5, " sphere"), (10, " none")]:
        ids = processor.tokenizer(word, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(table[row], words[ids].mean(0))


def tiny_saved(path, **overrides) -> str:
    model, processor = tiny_model_and_processor(**overrides)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def test_change_probability_and_fields_come_from_the_heads(tmp_path):
    model, processor = bottleneck_model()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    captioner = pipeline("image-difference-captioning", model=str(tmp_path), trust_remote_code=True)
    before, after = pairs(1)[0]
    result = captioner({"before": before, "after": after}, max_new_tokens=3, return_change_probability=True)
    with torch.no_grad():
        type_scores = model(**chat_inputs(processor, [(before, after)])).image_outputs.change_logits[2]
    expected = 1 - type_scores.double().softmax(-1)[0, 2].item()  # "none" is type value 2
    assert result["change_probability"] == pytest.approx(expected, abs=1e-6)
    fields = captioner({"before": before, "after": after}, max_new_tokens=2, return_change_fields=True)
    with torch.no_grad():
        logits = model(**chat_inputs(processor, [(before, after)])).image_outputs.change_logits
    chosen = [int(scores.argmax(-1)) for scores in logits]
    expected_fields = {n: v[k] for (n, v), k in zip(FIELDS.items(), chosen) if k < len(v)}
    assert fields["change_fields"] == expected_fields
    plain = pipeline("image-difference-captioning", model=tiny_saved(tmp_path / "plain"), trust_remote_code=True)
    with pytest.raises(ValueError, match="needs a model with change heads"):
        plain({"before": before, "after": after}, return_change_fields=True)
    # below the threshold nothing is generated: the caption is the type head's "no change"
    unchanged = captioner({"before": before, "after": after}, change_threshold=min(1.0, expected + 1e-3))
    assert unchanged["generated_text"] == "no change"


def test_generation_phrases_given_changes_from_their_embeddings():
    model, processor = bottleneck_model()
    batch = chat_inputs(processor, pairs(2))
    text = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    labels = torch.tensor([[0, 2, 1], [1, 0, 0]])
    settings = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
    embedded = model.embed_changes(batch["input_ids"], labels)
    with torch.no_grad():  # the embeddings are what forward builds from change_labels
        torch.testing.assert_close(
            model(**text, change_labels=labels).logits,
            model(inputs_embeds=embedded, attention_mask=text["attention_mask"]).logits,
        )
    phrased = model.generate(**text, inputs_embeds=embedded, **settings)
    uncached = model.generate(**text, inputs_embeds=embedded, use_cache=False, **settings)
    assert torch.equal(phrased, uncached)
    # greedy decoding by hand, one token at a time through forward with change_labels, says the same
    ids, mask = text["input_ids"], text["attention_mask"]
    for _ in range(6):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, change_labels=labels).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert torch.equal(phrased, ids)
    other = model.generate(
        **text, inputs_embeds=model.embed_changes(text["input_ids"], torch.tensor([[3, 1, 0], [2, 2, 2]])), **settings
    )
    assert not torch.equal(phrased[:, -6:], other[:, -6:])


def test_encode_and_decode_change_give_every_field_a_class_and_absent_its_own():
    config = tiny_config(delta_change_fields=FIELDS)
    assert config.encode_change('{"type": "color", "color": "blue"}') == [1, 2, 1]  # shape absent: its class 2
    assert config.encode_change({"type": "add", "color": "light_gray", "shape": "cube"}) == [2, 0, 0]
    assert config.decode_change([1, 2, 1]) == {"color": "blue", "type": "color"}
    with pytest.raises(ValueError, match="lack"):
        config.encode_change({"type": "add", "size": "large"})
    with pytest.raises(ValueError, match="not one of the model's values"):
        config.encode_change({"type": "drop"})
    with pytest.raises(ValueError, match="one class per field"):
        config.decode_change([0, 0])
    with pytest.raises(ValueError, match="needs `delta_change_fields`"):
        tiny_config().encode_change({"type": "add"})


def test_generate_with_change_labels_points_at_embed_changes():
    model, processor = bottleneck_model()
    batch = chat_inputs(processor, pairs(1))
    with pytest.raises(ValueError, match="embed_changes"):
        model.generate(**batch, change_labels=torch.tensor([[0, 0, 0]]), max_new_tokens=3, min_new_tokens=3)


def test_knows_change_says_which_changes_the_fields_can_state():
    config = tiny_config(delta_change_fields=FIELDS)
    assert config.knows_change('{"type": "add", "color": "red"}')
    assert not config.knows_change({"type": "drop"}) and not config.knows_change({"size": "large"})
    assert not config.knows_change("")


def test_no_change_logit_bias_moves_the_decision_and_the_probability_at_inference_only(tmp_path):
    model, processor = bottleneck_model()
    biased = OneDiffForConditionalGeneration(model.config.with_overrides(delta_no_change_logit_bias=3.5)).eval()
    biased.load_state_dict(model.state_dict())
    batch = chat_inputs(processor, pairs(2))
    with torch.no_grad():
        plain_logits = model(**batch).image_outputs.change_logits
        biased_outputs = biased(**batch).image_outputs
    torch.testing.assert_close(biased_outputs.change_logits[0], plain_logits[0])  # other fields untouched
    torch.testing.assert_close(biased_outputs.change_logits[2][:, :2], plain_logits[2][:, :2])
    torch.testing.assert_close(biased_outputs.change_logits[2][:, 2], plain_logits[2][:, 2] + 3.5)  # "none"
    biased.train()  # training learns from the classifiers' own scores
    with torch.no_grad():
        torch.testing.assert_close(biased(**batch).image_outputs.change_logits[2], plain_logits[2])
    biased.eval()

    # a bias large enough makes every pair "no change": the chosen tokens, the probability and the caption follow
    everything_none = OneDiffForConditionalGeneration(model.config.with_overrides(delta_no_change_logit_bias=1e4))
    everything_none.load_state_dict(model.state_dict())
    everything_none.eval().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = OneDiffForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.delta_no_change_logit_bias == 1e4
    with torch.no_grad():
        visual = reloaded(**batch).image_outputs
    chosen = torch.stack([scores.argmax(-1) for scores in visual.change_logits], 1)
    assert (chosen[:, 2] == 2).all()
    torch.testing.assert_close(visual.delta_hidden_states, reloaded.model.change_heads.embed(chosen))
    captioner = pipeline("image-difference-captioning", model=str(tmp_path), trust_remote_code=True)
    before, after = pairs(1)[0]
    result = captioner({"before": before, "after": after}, max_new_tokens=2, return_change_probability=True)
    assert result["change_probability"] == pytest.approx(0.0, abs=1e-9)

    with pytest.raises(ValueError, match="must be a number"):
        tiny_config(delta_change_fields=FIELDS, delta_no_change_logit_bias="high")
    with pytest.raises(ValueError, match='has a "none" value'):
        tiny_config(delta_change_fields={"type": ["add", "drop"]}, delta_no_change_logit_bias=1.0)
    with pytest.raises(ValueError, match='has a "none" value'):
        tiny_config(delta_no_change_logit_bias=1.0)


SCHEMA = {"add": {"color": ["red", "blue"], "shape": ["cube", "sphere"]}, "color": {"color": ["blue"]}, "none": {}}


def test_change_schema_decodes_the_most_likely_valid_change(tmp_path):
    model, processor = bottleneck_model(delta_change_schema=SCHEMA)
    heads = model.model.change_heads
    absent = -20.0

    def logits(color, shape, change_type):  # log-probabilities-to-be of each field, "absent" last
        return tuple(torch.tensor([row]) for row in (color, shape, change_type))

    # each field's favourite says "nothing changed, and the red cube did": no such change exists. The type head finds
    # "none" less likely than the two changes together, so something changed: the joint choice says what
    inconsistent = logits([3.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.5], [0.5, 0.5, 1.0, absent])
    assert heads.choose(inconsistent).tolist() == [[0, 0, 0]]  # "add" of the red cube (3 + 2 beats 0 + 1.5 of colour)
    plain, _ = bottleneck_model()
    assert plain.model.change_heads.choose(inconsistent).tolist() == [[0, 0, 2]]  # per field, as before
    # a colour change has only a new colour here: the shape is absent, the colour the allowed one, whatever scores more
    colour = logits([5.0, 1.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 12.0, 0.0, absent])
    assert heads.choose(colour).tolist() == [[1, 2, 1]]
    # a type outside the schema, or "absent" as a type, is never said
    outside = logits([0.0, 0.0, 9.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0])
    assert heads.choose(outside).tolist()[0][2] in (0, 1, 2)

    # the forward and the pipeline use the same choice; the schema survives save and reload
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert OneDiffConfig.from_pretrained(tmp_path).delta_change_schema == {
        "add": {"color": ["red", "blue"], "shape": ["cube", "sphere"]},
        "color": {"color": ["blue"]},
        "none": {},
    }
    captioner = pipeline("image-difference-captioning", model=str(tmp_path), trust_remote_code=True)
    before, after = pairs(1)[0]
    fields = captioner({"before": before, "after": after}, max_new_tokens=2, return_change_fields=True)
    with torch.no_grad():
        visual = model(**chat_inputs(processor, [(before, after)])).image_outputs
    chosen = heads.choose(visual.change_logits)
    assert fields["change_fields"] == model.config.decode_change(chosen[0].tolist())
    torch.testing.assert_close(visual.delta_hidden_states, heads.embed(chosen))
    assert fields["change_fields"].get("type") in SCHEMA


def test_the_type_head_alone_decides_whether_anything_changed(tmp_path):
    """The other fields' confidence about an object never outvotes the type head's "none": the pair is unchanged
    exactly when the type head gives "none" a probability of at least 0.5 (the pipeline's change probability)."""
    model, processor = bottleneck_model(delta_change_schema=SCHEMA)
    heads = model.model.change_heads

    def logits(change_type):  # the colour and shape heads very sure of a red cube
        return tuple(torch.tensor([row]) for row in ([9.0, 0.0, 0.0, 0.0], [9.0, 0.0, 0.0], change_type))

    # P(none) = e / (e + 2) = 0.58: unchanged, though the joint score of "add the red cube" is far higher
    assert heads.choose(logits([0.0, 0.0, 1.0, -20.0])).tolist() == [[3, 2, 2]]
    # P(none) = e^0.6 / (e^0.6 + 2) = 0.48: changed, and the joint choice names the change
    assert heads.choose(logits([0.0, 0.0, 0.6, -20.0])).tolist() == [[0, 0, 0]]
    # everything but "none" counts against it, a type outside the schema ("absent" here) too, as in the probability
    assert heads.choose(logits([-20.0, -20.0, 0.0, 0.1])).tolist() == [[0, 0, 0]]

    # the bias moves the gate; the caption and the reported change probability agree on every pair
    biased = OneDiffForConditionalGeneration(model.config.with_overrides(delta_no_change_logit_bias=2.0)).eval()
    biased.load_state_dict(model.state_dict())
    biased.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    captioner = pipeline("image-difference-captioning", model=str(tmp_path), trust_remote_code=True)
    for before, after in pairs(6, offset=40):
        result = captioner(
            {"before": before, "after": after},
            max_new_tokens=2,
            return_change_probability=True,
            return_change_fields=True,
        )
        assert (result["change_fields"].get("type") == "none") == (result["change_probability"] <= 0.5)


COLOURS = {"color": ["red", "blue"], "new_value": ["red", "blue", "metal"], "type": ["color", "none", "texture"]}
COLOUR_SCHEMA = {"color": {"color": ["red", "blue"], "new_value": ["red", "blue"]}, "none": {}}


def test_change_distinct_never_says_a_change_to_the_value_it_had():
    distinct = {"color": [["color", "new_value"]]}
    model, _ = tiny_model_and_processor(
        delta_change_fields=COLOURS,
        use_image_tokens=False,
        delta_change_schema=COLOUR_SCHEMA,
        delta_change_distinct=distinct,
    )
    plain, _ = tiny_model_and_processor(
        delta_change_fields=COLOURS, use_image_tokens=False, delta_change_schema=COLOUR_SCHEMA
    )
    absent = -20.0

    def logits(color, new_value, change_type):  # "absent" last
        return tuple(torch.tensor([row]) for row in (color, new_value, change_type))

    # both heads favour red: the schema alone says "the red object changed to red"
    same = logits([4.0, 1.0, 0.0], [3.0, 2.5, absent, 0.0], [2.0, 0.0, absent, absent])
    assert plain.model.change_heads.choose(same).tolist() == [[0, 0, 0]]
    # the best pair of different values: red -> blue (4 + 2.5 beats blue -> red, 1 + 3)
    assert model.model.change_heads.choose(same).tolist() == [[0, 1, 0]]
    # both heads sure of red: the best pair of different values keeps the likelier new value (blue -> red, 0.5 + 6)
    sure = logits([6.0, 0.5, 5.0], [6.0, 0.0, absent, 5.0], [1.0, 0.5, absent, absent])
    assert plain.model.change_heads.choose(sure).tolist() == [[0, 0, 0]]
    assert model.model.change_heads.choose(sure).tolist() == [[1, 0, 0]]
    unchanged = logits([6.0, 0.5, 5.0], [6.0, 0.0, absent, 5.0], [0.5, 1.0, absent, absent])
    batch = tuple(torch.cat([a, b, c]) for a, b, c in zip(same, sure, unchanged))  # rows decode independently
    assert model.model.change_heads.choose(batch).tolist() == [[0, 1, 0], [1, 0, 0], [2, 3, 1]]

    changes = [
        {"type": "color", "color": "red", "new_value": "blue"},
        {"type": "color", "color": "blue", "new_value": "red"},
        {"type": "texture", "material": "rubber", "new_value": "metal"},
        {"type": "add", "color": "red", "material": "metal"},  # share no value: no pair
        {"type": "move", "size": "small", "new_value": "small"},  # took the same value once: no pair
        {"type": "none"},
    ]
    assert OneDiffConfig.change_distinct([*changes, None]) == {
        "color": [["color", "new_value"]],
    }
    for bad, message in (
        ({"add": [["color", "new_value"]]}, "which `delta_change_schema` lacks"),
        ({"color": [["color", "type"]]}, "pairs of two of its fields"),
        ({"color": [["color", "color"]]}, "pairs of two of its fields"),
        ({"color": ["color"]}, "pairs of two of its fields"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_config(
                delta_change_fields=COLOURS,
                use_image_tokens=False,
                delta_change_schema=COLOUR_SCHEMA,
                delta_change_distinct=bad,
            )
    with pytest.raises(ValueError, match="needs `delta_change_schema`"):
        tiny_config(delta_change_fields=COLOURS, use_image_tokens=False, delta_change_distinct=distinct)


def test_change_schema_is_recorded_from_changes_and_checked():
    changes = ['{"type": "add", "color": "red", "shape": "cube"}', {"type": "color", "color": "blue"}, {"type": "none"}]
    assert OneDiffConfig.change_schema([*changes, None, ""]) == {
        "add": {"color": ["red"], "shape": ["cube"]},
        "color": {"color": ["blue"]},
        "none": {},
    }
    for bad, message in (
        ({"move": {}}, "names type 'move'"),
        ({"add": {"type": ["add"]}}, "names field 'type'"),
        ({"add": {"color": ["green"]}}, "must list some of"),
        ({}, "non-empty dict"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_config(delta_change_fields=FIELDS, use_image_tokens=False, delta_change_schema=bad)
    with pytest.raises(ValueError, match="needs `delta_change_fields`"):
        tiny_config(delta_change_schema=SCHEMA)
