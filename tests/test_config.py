import pytest
from transformers import AutoConfig, Qwen2Config, SiglipVisionConfig

from modeling_onediff import OneDiffConfig
from tiny import tiny_config


def test_default_config_is_the_paper_size():
    config = OneDiffConfig()
    assert config.vision_config.model_type == "clip_vision_model"
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (336, 14)
    assert config.delta_feature_layers == [8, 16, 24]  # the paper's layers of a 24-layer ViT-L
    assert config.delta_num_hidden_layers == 6
    assert config.delta_hidden_size == config.vision_config.hidden_size
    assert config.num_image_tokens(336) == 576
    assert config.get_text_config() is config.text_config


def test_any_tower_configs_and_dicts_are_accepted():
    config = OneDiffConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 64, "num_attention_heads": 4},
        text_config={"model_type": "qwen2", "hidden_size": 32, "tie_word_embeddings": True},
        image_token_pooling=2,
    )
    assert isinstance(config.vision_config, SiglipVisionConfig)
    assert isinstance(config.text_config, Qwen2Config)
    assert config.tie_word_embeddings is True  # follows the text config unless given
    assert config.num_image_tokens(224) == 49  # 14x14 patches of 16 px, pooled by 2 (ceil)


def test_round_trip_through_save_pretrained(tmp_path):
    config = tiny_config("siglip-qwen2", image_token_pooling=2, delta_use_difference=False)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, OneDiffConfig)
    saved, original = loaded.to_dict(), config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original
    assert loaded.auto_map["AutoModel"] == "modeling_onediff.OneDiffForConditionalGeneration"
    assert "image-difference-captioning" in loaded.custom_pipelines


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_delta_queries", 0),
        ("num_delta_queries", "8"),
        ("delta_num_hidden_layers", -1),
        ("cross_attention_frequency", 0),
        ("image_token_pooling", 1.5),
        ("delta_feature_layers", [1, 99]),
        ("delta_feature_layers", []),
        ("delta_feature_layers", [2, 2]),
        ("vision_feature_layer", -30),
        ("delta_num_attention_heads", 5),
        ("delta_use_difference", "yes"),
        ("delta_alignment", 1),
        ("delta_attention_dropout", 1.5),
        ("image_token_id", -3),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_vision_config_without_patches_is_refused():
    with pytest.raises(ValueError, match="vision_config"):
        OneDiffConfig(vision_config={"model_type": "llama"})
