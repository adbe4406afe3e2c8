import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)  # tiny models: thread start-up costs more than it saves, and xdist runs 2 workers


@pytest.fixture(params=["clip-llama", "siglip-qwen2"])
def tower_pair(request) -> str:
    return request.param


def pytest_configure(config):
    # marks used by transformers' common test suites (tests/test_transformers_common.py runs them on OneDiff)
    for mark in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test"):
        config.addinivalue_line("markers", f"{mark}: transformers' own test suites")
