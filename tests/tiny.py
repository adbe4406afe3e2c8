"""The tests' tiny random models, tokenizers and images (they live in the package for the tiny recipes)."""

from onediff_idc.train.tiny_model import *  # noqa: F403
from onediff_idc.train.tiny_model import PreTrainedTokenizerFast  # noqa: F401
