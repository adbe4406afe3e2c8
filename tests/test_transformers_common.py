"""transformers' own `ModelTesterMixin` (and `GenerationTesterMixin` where available) run against a tiny OneDiff.

Written the way transformers' `tests/models/llava/test_modeling_llava.py` tests LLaVA: a model tester that builds a
tiny config and inputs with the placeholders already expanded, and a `unittest.TestCase` with the mixins. The suites
come from the installed transformers version (see `transformers_suites.py`). A test that does not apply to an
image-pair model is skipped below with its reason, as transformers' own testers do.
"""

import unittest
from unittest import mock

import pytest
import torch
from transformers.models.auto import modeling_auto
from transformers_suites import load_common_tests

from modeling_onediff import OneDiffConfig, OneDiffForConditionalGeneration, OneDiffModel

try:
    common, HAS_GENERATION_SUITE = load_common_tests()
except RuntimeError as error:  # offline machine: the sdist cannot be fetched
    pytest.skip(f"transformers' common tests unavailable: {error}", allow_module_level=True)


class OneDiffModelTester:
    def __init__(
        self,
        parent,
        batch_size=3,
        text_length=7,
        image_size=8,
        patch_size=2,
        image_token_pooling=2,
        num_delta_queries=2,
        is_training=True,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = is_training
        self.image_size, self.patch_size = image_size, patch_size
        self.num_channels = 3
        grid = image_size // patch_size
        self.num_image_tokens = 2 * (grid // image_token_pooling) ** 2  # before + after
        self.num_delta_queries = num_delta_queries
        self.seq_length = text_length + self.num_image_tokens + num_delta_queries
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.image_token_id, self.delta_token_id, self.pad_token_id = 3, 4, 1
        self.text_config = {
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": 37,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "initializer_range": 0.02,
        }
        self.vision_config = {
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": patch_size,
            "projection_dim": 32,
            "initializer_range": 0.02,
        }
        self.config_kwargs = {
            "vision_feature_layer": -1,
            "delta_feature_layers": [1, 2],
            "image_token_pooling": image_token_pooling,
            "num_delta_queries": num_delta_queries,
            "delta_hidden_size": 32,
            "delta_num_hidden_layers": 2,
            "delta_num_attention_heads": 4,
            "delta_intermediate_size": 37,
            "image_token_id": self.image_token_id,
            "delta_token_id": self.delta_token_id,
            "tie_word_embeddings": False,
        }

    def get_config(self) -> OneDiffConfig:
        return OneDiffConfig(text_config=self.text_config, vision_config=self.vision_config, **self.config_kwargs)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        pixel_values = common.floats_tensor([self.batch_size, 2, self.num_channels, self.image_size, self.image_size])
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 5) + 5  # no special ids
        # the processor's layout: before/after image tokens, then the delta tokens, then text
        input_ids[:, : self.num_image_tokens] = self.image_token_id
        input_ids[:, self.num_image_tokens : self.num_image_tokens + self.num_delta_queries] = self.delta_token_id
        attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=common.torch_device)
        return config, {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask}


class OneDiffModelTest(common.ModelTesterMixin, common.GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (OneDiffModel, OneDiffForConditionalGeneration)
    _is_composite = True

    @classmethod
    def setUpClass(cls):
        # The suites pick what to test (labels, training, image-text-to-text checks) by looking a model's class name up
        # in the library's auto mappings. OneDiff is remote code, so it is listed there for this class only, where
        # LLaVA is listed: a base model and an image-text-to-text model.
        cls._listed = [
            mock.patch.dict(modeling_auto.MODEL_MAPPING_NAMES, {"onediff": OneDiffModel.__name__}),
            mock.patch.dict(
                modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
                {"onediff": OneDiffForConditionalGeneration.__name__},
            ),
        ]
        for patch in cls._listed:
            patch.start()

    @classmethod
    def tearDownClass(cls):
        for patch in cls._listed:
            patch.stop()

    def setUp(self):
        self.model_tester = OneDiffModelTester(self)
        self.config_tester = None

    def test_generation_tester_mixin_inheritance(self):
        if not HAS_GENERATION_SUITE:
            self.skipTest(
                "GenerationTesterMixin lives only in transformers' repository (tests/generation/test_utils.py), not in "
                "its sdist; see transformers_suites.py and tests/test_generation_paths.py"
            )
        super().test_generation_tester_mixin_inheritance()
