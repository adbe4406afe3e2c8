"""PyTorch OneDiff: a siamese vision tower, a Visual Delta Module and a causal language model.

Implements the architecture of Hu et al., "OneDiff: A Generalist Model for Image Difference Captioning"
(arXiv 2407.05645) in transformers' LLaVA layout (`OneDiffModel` + `lm_head`):

    pixel_values (B, 2, C, H, W) -> one batched pass of the shared vision tower over both images
      - patch tokens of `vision_feature_layer` -> optional pooling -> image projector -> image tokens of A and B
      - patch tokens of `delta_feature_layers` -> Visual Delta Module (learnable queries that self-attend and
        cross-attend to [A, B, B-A] of every selected layer) -> delta projector -> delta tokens
    the processor expands `<image> <image> <delta>` in the prompt; their embeddings are replaced by those features
    and the decoder generates the difference caption.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    BaseModelOutputWithPooling,
    CausalLMOutputWithPast,
    ModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_onediff import OneDiffConfig

# Imported so that `save_pretrained` ships pipeline_onediff.py with every checkpoint (transformers copies the
# modeling file's relative imports); config.json's `custom_pipelines` points at it.
from .pipeline_onediff import ImageDifferenceCaptioningPipeline  # noqa: F401

logger = logging.get_logger(__name__)

# The name transformers gives the KV cache, in `forward` arguments and in output fields: `past_key_values` up to 5.23,
# `cache` from 5.24. Read from the library's own output class so that one checkpoint's remote code runs on both.
CACHE_NAME = next(f.name for f in dataclasses.fields(BaseModelOutputWithPast) if f.name in ("cache", "past_key_values"))


def _takes_cache_under_both_names(forward: Callable) -> Callable:
    """
    `forward` takes the KV cache as `cache`, and as `past_key_values` too: from 5.24 through the library's own
    deprecation (a warning, then renamed, as LLaVA does); on 5.23, where `past_key_values` is the name generation
    passes, renamed without a warning.
    """
    if CACHE_NAME == "cache":
        return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")(forward)

    @functools.wraps(forward)
    def renamed(*args, **kwargs):
        if "past_key_values" in kwargs:
            if kwargs.get("cache") is not None:
                raise ValueError("Pass the KV cache once, as `cache` or as `past_key_values`, not both")
            kwargs["cache"] = kwargs.pop("past_key_values")
        return forward(*args, **kwargs)

    return renamed


def global_change_statistics(
    before: torch.Tensor, after: torch.Tensor, change: torch.Tensor | None = None
) -> torch.Tensor:
    """
    A layer's global change, what `delta_global_difference` gives the delta module: the mean of B-A, the mean of |B-A|
    and the change of each channel's spread over the patches. `before`, `after` (and `change` = after - before, if
    already computed) of shape `(..., num_patches, width)`; returns `(..., 3 * width)`.
    """
    change = after - before if change is None else change
    return torch.cat([change.mean(-2), change.abs().mean(-2), after.std(-2) - before.std(-2)], dim=-1)


def patch_positions(patch_grid: tuple[int, int], device=None) -> torch.Tensor:
    """Centres of the patches of a `patch_grid` (height, width) grid, row-major, as (x, y) in [-1, 1]: `(N, 2)`."""
    height, width = patch_grid
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


ALIGNMENT_SIZE = 8  # affine_alignment's numbers per layer


def affine_alignment(
    before: torch.Tensor, after: torch.Tensor, patch_grid: tuple[int, int], temperature: float = 0.05
) -> torch.Tensor:
    """
    Where each patch of B came from in A, summarised as an affine map: `(..., 8)` from raw features of shape
    `(..., num_patches, width)` on a `patch_grid` grid. Every B patch is matched softly to the A patches its features
    resemble (softmax of cosine similarity / `temperature`, positions in [-1, 1]), and `source = M @ position + t`
    is fitted by least squares weighted by each match's best similarity. Returns M (4, row-major), t (2), the
    weighted residual and the mean best similarity. Global statistics of B-A cannot tell a mirror image from the
    original or a clockwise from a counterclockwise turn; M can (a flip negates one of its diagonal entries, a turn
    makes it antisymmetric, a zoom shrinks it, a shift moves t).
    """
    positions = patch_positions(patch_grid, before.device)  # (N, 2)
    similarity = F.normalize(after.float(), dim=-1) @ F.normalize(before.float(), dim=-1).transpose(-1, -2)
    source = torch.softmax(similarity / temperature, dim=-1) @ positions  # (..., N, 2): where in A
    weight = similarity.amax(dim=-1).clamp(min=0)  # (..., N)
    design = torch.cat([positions, positions.new_ones(len(positions), 1)], dim=-1)  # (N, 3)
    weighted = design * weight.unsqueeze(-1)  # (..., N, 3)
    normal = weighted.transpose(-1, -2) @ design + 1e-4 * torch.eye(3, device=design.device)  # (..., 3, 3)
    solution = torch.linalg.solve(normal, weighted.transpose(-1, -2) @ source)  # (..., 3, 2)
    residual = ((design @ solution - source).square().sum(-1) * weight).sum(-1) / weight.sum(-1).clamp(min=1e-6)
    matrix, shift = solution[..., :2, :].transpose(-1, -2).flatten(-2), solution[..., 2, :]
    return torch.cat([matrix, shift, residual.sqrt().unsqueeze(-1), weight.mean(-1, keepdim=True)], dim=-1)


# Modules after the last hidden state of a vision tower (final norms, pooling heads). OneDiff reads hidden states,
# so these never receive a gradient; they are frozen to keep "every trainable parameter gets a gradient" true.
_VISION_OUTPUT_MODULES = ("post_layernorm", "layernorm", "head", "pooler")
_VISION_UNUSED_PARAMETERS = ("mask_token",)  # DINOv2's masked-image-modelling token: never used at inference


def nearest_patch_distance(
    features: torch.Tensor, others: torch.Tensor, patch_grid: tuple[int, int], radius: int
) -> torch.Tensor:
    """For every patch of `features`, the distance to the nearest patch of `others` at most `radius` rows and columns
    away (the grid's edge patches repeated beyond it): `(batch_size, num_layers, num_patches)` from two
    `(batch_size, num_layers, num_patches, hidden_size)` tensors on a `patch_grid` (height, width) grid."""
    height, width = patch_grid
    grid = others.float().unflatten(2, (height, width)).permute(0, 1, 4, 2, 3)  # (B, L, D, h, w)
    padded = F.pad(grid.flatten(0, 1), (radius,) * 4, mode="replicate").unflatten(0, grid.shape[:2])
    features = features.float().unflatten(2, (height, width)).permute(0, 1, 4, 2, 3)
    nearest = None
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            distance = (features - padded[..., dy : dy + height, dx : dx + width]).norm(dim=2)  # (B, L, h, w)
            nearest = distance if nearest is None else torch.minimum(nearest, distance)
    return nearest.flatten(2)


def change_magnitude(
    before: torch.Tensor,
    after: torch.Tensor,
    patch_grid: tuple[int, int],
    shift_tolerance: int = 0,
    change: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Each patch's change: `(batch_size, num_layers, num_patches)`, from raw features of shape `(batch_size,
    num_layers, num_patches, vision_hidden_size)`. The change is |B-A| at the same position or, with
    `shift_tolerance` r, the distance to the nearest patch of the other image within r rows and columns, taken both
    ways (an added object has no match in A, a removed one none in B). `change` is `after - before` if the caller has
    it already.
    """
    if shift_tolerance == 0:
        return (after - before if change is None else change).float().norm(dim=-1)
    return torch.maximum(
        nearest_patch_distance(after, before, patch_grid, shift_tolerance),
        nearest_patch_distance(before, after, patch_grid, shift_tolerance),
    )


def relative_change(
    before: torch.Tensor,
    after: torch.Tensor,
    patch_grid: tuple[int, int],
    shift_tolerance: int = 0,
    change: torch.Tensor | None = None,
) -> torch.Tensor:
    """`change_magnitude` over the mean change of its layer's patches: where an image changed most, whatever the
    layer's scale (`(batch_size, num_layers, num_patches)`)."""
    return relative_to_mean(change_magnitude(before, after, patch_grid, shift_tolerance, change))


def relative_to_mean(magnitude: torch.Tensor) -> torch.Tensor:
    """Each patch's change over the mean over the patches (the last dimension)."""
    return magnitude / (magnitude.mean(dim=-1, keepdim=True) + 1e-6)


PIXEL_STATISTICS_PER_CHANNEL = 2  # mean and standard deviation (+ detail with `delta_pixel_detail`)


def patch_pixel_statistics(pixel_values: torch.Tensor, patch_size: int, detail: bool = False) -> torch.Tensor:
    """
    Each patch's mean and standard deviation of every channel, `(batch_size, num_patches, 2 * num_channels)` (means
    first), from pixel values `(batch_size, num_channels, height, width)` cut into the tower's square patches (pixels
    beyond the last whole patch are left out, as the tower's patch embedding leaves them). What colour a patch
    holds, which DINOv2's features keep only faintly: the tower was trained to ignore colour jitter. With `detail`,
    also each channel's detail (`3 * num_channels`, last): the standard deviation of the pixels minus the mean of
    their 3x3 neighbourhood, the fine texture a sharpening multiplies and a blur removes, which the spread mixes with
    the patch's shading.
    """
    height, width = pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size
    pixels = pixel_values[..., : height * patch_size, : width * patch_size].float()

    def patches(plane: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, h, p, w, p)
        return plane.unflatten(-1, (width, patch_size)).unflatten(-3, (height, patch_size))

    blocks = patches(pixels)
    statistics = [blocks.mean(dim=(-3, -1)), blocks.std(dim=(-3, -1), correction=0)]  # (B, C, h, w) each
    if detail:
        neighbourhood = F.avg_pool2d(F.pad(pixels, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        statistics.append(patches(pixels - neighbourhood).std(dim=(-3, -1), correction=0))
    return torch.cat(statistics, dim=1).flatten(2).transpose(1, 2)  # (B, h*w, S*C): means, spreads[, details]


def pixel_summary(pixel_statistics: torch.Tensor, num_channels: int) -> torch.Tensor:
    """
    How the whole picture's pixel statistics moved, `(batch_size, statistics)`, from `patch_pixel_statistics` of
    both images `(batch_size, 2, num_patches, statistics)` (means first): the mean over the patches of B's mean
    minus A's, per channel, then of the log ratio of B's to A's spread (and detail). Brighter, a colour cast, a blur
    or a sharpening and how strong it is: one number each, the same wherever the picture holds texture.
    """
    before, after = pixel_statistics[:, 0].float(), pixel_statistics[:, 1].float()
    shift = (after[..., :num_channels] - before[..., :num_channels]).mean(dim=1)
    ratio = torch.log((after[..., num_channels:] + 1e-2) / (before[..., num_channels:] + 1e-2)).mean(dim=1)
    return torch.cat([shift, ratio], dim=-1)


MIRRORS = ((), (-1,), (-2,), (-2, -1))  # grid axes flipped: none, left-right, top-bottom, both (a half turn)


def mirror_distances(pixel_statistics: torch.Tensor, patch_grid: tuple[int, int]) -> torch.Tensor:
    """
    How far the after image's patch statistics lie from the before image's, as they are and mirrored: `(batch_size,
    4)`, the log of the mean absolute difference (+ 1e-3) against A unchanged, flipped left to right, top to bottom
    and both, from `patch_pixel_statistics` of both images `(batch_size, 2, num_patches, statistics)` on `patch_grid`.
    A patch's mean and spread do not change when it is mirrored, so a pure flip makes its distance 0 (log 1e-3).
    """
    grid = pixel_statistics.float().unflatten(2, patch_grid)  # (B, 2, h, w, S)
    before, after = grid[:, 0].movedim(-1, 1), grid[:, 1].movedim(-1, 1)  # (B, S, h, w)
    distances = [(after - (before.flip(dims) if dims else before)).abs().mean(dim=(1, 2, 3)) for dims in MIRRORS]
    return torch.log(torch.stack(distances, dim=-1) + 1e-3)


MAX_GRID_SIDE = 64  # patch rows/columns the zoom's position embeddings cover (896 px at patch 14)


@dataclass
class OneDiffVisualOutput(BaseModelOutputWithPooling):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 2, sequence_length, vision_hidden_size)`):
        The vision tower's last hidden state of the before and the after image of each pair.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, 2 * num_image_tokens, hidden_size)`):
        Projected image tokens of the before image followed by those of the after image (`None` with
        `use_image_tokens=False`).
    hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`):
        The vision tower's hidden states (embeddings, then every layer), each of shape
        `(batch_size, 2, sequence_length, vision_hidden_size)`.
    attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`):
        The vision tower's attention maps, each of shape `(batch_size, 2, num_heads, sequence_length, sequence_length)`.
    delta_hidden_states (`torch.FloatTensor` of shape `(batch_size, num_delta_tokens, hidden_size)`):
        The delta tokens: the projected output of the Visual Delta Module, or with `delta_change_fields` the
        embeddings of the values its change heads chose.
    change_logits (`tuple(torch.FloatTensor)`, *optional*):
        With `delta_change_fields`, one tensor per field of shape `(batch_size, num_values + 1)`: the change heads'
        scores of the field's values, the last one meaning "absent".
    difference_features (`torch.FloatTensor` of shape `(batch_size, num_delta_layers, num_patches, delta_hidden_size)`):
        The B-A context features the delta module saw (`None` when `delta_use_difference=False`).
    delta_cross_attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`):
        One tensor per cross-attention block, of shape `(batch_size, num_heads, num_delta_queries, context_length)`.
    delta_context_patches (`torch.LongTensor` of shape `(batch_size, delta_zoom_patches)`, *optional*):
        With `delta_zoom_patches`, the patches (row-major indices) each pair's delta module attended to.
    delta_change_extent (`torch.FloatTensor` of shape `(batch_size, num_patches)`, *optional*):
        With `delta_zoom_patches`, how much every patch changed: the score the zoom ranks the patches by.
    patch_grid (`torch.LongTensor` of shape `(2,)`):
        Height and width of the patch grid the delta module attended over.
    """

    delta_hidden_states: torch.FloatTensor | None = None
    change_logits: tuple[torch.FloatTensor, ...] | None = None
    difference_features: torch.FloatTensor | None = None
    delta_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    delta_context_patches: torch.LongTensor | None = None
    delta_change_extent: torch.FloatTensor | None = None
    patch_grid: torch.LongTensor | None = None


@dataclass
class OneDiffModelOutputWithPast(BaseModelOutputWithPast):
    r"""
    image_hidden_states (`torch.FloatTensor` of shape `(batch_size, 2 * num_image_tokens, hidden_size)`, *optional*):
        Projected image tokens scattered into the sequence.
    delta_hidden_states (`torch.FloatTensor` of shape `(batch_size, num_delta_tokens, hidden_size)`, *optional*):
        Projected delta tokens scattered into the sequence.
    image_outputs (`OneDiffVisualOutput`, *optional*):
        Everything the vision side produced for the pairs (see `OneDiffVisualOutput`); `None` without `pixel_values`.
    """

    image_hidden_states: torch.FloatTensor | None = None
    delta_hidden_states: torch.FloatTensor | None = None
    image_outputs: OneDiffVisualOutput | None = None


@dataclass
class OneDiffCausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""
    The library's causal-LM output (its KV cache field keeps the installed version's name) plus the visual outputs.

    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `labels` is provided):
        Next-token cross-entropy over the labelled positions (placeholders and padding never count).
    image_hidden_states (`torch.FloatTensor` of shape `(batch_size, 2 * num_image_tokens, hidden_size)`, *optional*):
        Projected image tokens scattered into the sequence.
    delta_hidden_states (`torch.FloatTensor` of shape `(batch_size, num_delta_tokens, hidden_size)`, *optional*):
        Projected delta tokens scattered into the sequence.
    image_outputs (`OneDiffVisualOutput`, *optional*):
        Everything the vision side produced for the pairs; `None` without `pixel_values`.
    """

    image_hidden_states: torch.FloatTensor | None = None
    delta_hidden_states: torch.FloatTensor | None = None
    image_outputs: OneDiffVisualOutput | None = None


@dataclass
class OneDiffDeltaAttentionMaps(ModelOutput):
    r"""
    Where the Visual Delta Module looked, averaged over cross-attention blocks, heads, queries and feature layers.
    Each map holds the share of attention that went to each patch; `before + after + difference` sums to 1 (less the
    share on the global tokens, with `delta_global_difference`).

    before (`torch.FloatTensor` of shape `(batch_size, grid_height, grid_width)`): attention on the before image.
    after (`torch.FloatTensor` of shape `(batch_size, grid_height, grid_width)`): attention on the after image.
    difference (`torch.FloatTensor` of shape `(batch_size, grid_height, grid_width)`, *optional*): on B-A features.
    pixels (`torch.FloatTensor` of shape `(batch_size, grid_height, grid_width)`, *optional*): on the pixel tokens
        (`delta_pixel_statistics`).
    change (`torch.FloatTensor` of shape `(batch_size, grid_height, grid_width)`): where the module looked at all,
        whatever the image: `before + after + difference [+ pixels]`, rescaled to sum to 1 per pair (the change map).
    change_extent (`torch.FloatTensor` of shape `(batch_size, grid_height, grid_width)`, *optional*): with
        `delta_zoom_patches`, how much every patch changed (the zoom's score), whether or not the module looked there:
        the change box grows from the change map's peak over it.
    cross_attentions (`tuple(torch.FloatTensor)`): the raw per-block maps (see `OneDiffVisualOutput`).
    """

    before: torch.FloatTensor | None = None
    after: torch.FloatTensor | None = None
    difference: torch.FloatTensor | None = None
    pixels: torch.FloatTensor | None = None
    change: torch.FloatTensor | None = None
    change_extent: torch.FloatTensor | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, Q, K)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, Q, heads, head_dim)
    return attn_output, attn_weights


class OneDiffDeltaAttention(nn.Module):
    """Multi-head attention of the delta queries over themselves (self) or over the image context (cross)."""

    def __init__(self, config: OneDiffConfig):
        super().__init__()
        self.config = config
        self.hidden_size = config.delta_hidden_size
        self.num_heads = config.delta_num_attention_heads
        self.head_dim = self.hidden_size // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.delta_attention_dropout
        self.is_causal = False
        self.q_proj = nn.Linear(self.hidden_size, self.hidden_size)
        self.k_proj = nn.Linear(self.hidden_size, self.hidden_size)
        self.v_proj = nn.Linear(self.hidden_size, self.hidden_size)
        self.o_proj = nn.Linear(self.hidden_size, self.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor | None = None,
        output_attentions: bool = False,
        attention_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`attention_bias` of shape `(batch_size, num_heads or 1, 1, context_length)` is added to the logits."""
        context = hidden_states if context is None else context
        batch_size = hidden_states.shape[0]
        query = self.q_proj(hidden_states).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.k_proj(context).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(context).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        attention_interface: Callable = eager_attention_forward
        if not output_attentions:  # only eager returns the attention maps
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_bias,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        attn_output = attn_output.reshape(batch_size, -1, self.hidden_size)
        return self.o_proj(attn_output), attn_weights


class OneDiffDeltaMLP(nn.Module):
    def __init__(self, config: OneDiffConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.delta_hidden_size, config.delta_intermediate_size)
        self.act = ACT2FN[config.delta_hidden_act]
        self.fc2 = nn.Linear(config.delta_intermediate_size, config.delta_hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class OneDiffDeltaBlock(GradientCheckpointingLayer):
    """Pre-norm block: self-attention over the queries, optional cross-attention to the context, MLP."""

    def __init__(self, config: OneDiffConfig, has_cross_attention: bool):
        super().__init__()
        eps = config.delta_layer_norm_eps
        self.self_attn_norm = nn.LayerNorm(config.delta_hidden_size, eps=eps)
        self.self_attn = OneDiffDeltaAttention(config)
        self.has_cross_attention = has_cross_attention
        if has_cross_attention:
            self.cross_attn_norm = nn.LayerNorm(config.delta_hidden_size, eps=eps)
            self.cross_attn = OneDiffDeltaAttention(config)
        self.mlp_norm = nn.LayerNorm(config.delta_hidden_size, eps=eps)
        self.mlp = OneDiffDeltaMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor,
        output_attentions: bool = False,
        context_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden_states = hidden_states + self.self_attn(self.self_attn_norm(hidden_states))[0]
        cross_weights = None
        if self.has_cross_attention:
            attended, cross_weights = self.cross_attn(
                self.cross_attn_norm(hidden_states),
                context,
                output_attentions=output_attentions,
                attention_bias=context_bias,
            )
            hidden_states = hidden_states + attended
        hidden_states = hidden_states + self.mlp(self.mlp_norm(hidden_states))
        return hidden_states, cross_weights


@dataclass
class OneDiffDeltaInputs(ModelOutput):
    r"""
    What the delta module reads of a batch of pairs before any learned weight: the raw features it attends to, the
    zoom and the change statistics, all functions of the frozen tower's features alone. Training caches these (with
    a zoom, `k` patches per pair instead of the whole grid) and calls `OneDiffVisualDeltaModule.attend` on them.

    before, after (`torch.FloatTensor` of shape `(batch_size, num_layers, num_patches or k, vision_hidden_size)`):
        Raw tower features of the patches in the context.
    patch_grid (`tuple[int, int]`):
        Height and width of the patch grid the features come from.
    patches (`torch.LongTensor` of shape `(batch_size, k)`, *optional*):
        With `delta_zoom_patches`, the kept patches (row-major indices, in grid order).
    relative (`torch.FloatTensor` of shape `(batch_size, num_layers, num_patches or k)`, *optional*):
        With `delta_difference_prior`, `relative_change` of the patches in the context.
    global_statistics (`torch.FloatTensor` of shape `(batch_size, num_layers, 3 * vision_hidden_size)`, *optional*):
        With `delta_global_difference`, `global_change_statistics` over every patch.
    alignment (`torch.FloatTensor` of shape `(batch_size, num_layers, 8)`, *optional*):
        With `delta_alignment`, `affine_alignment` of every patch.
    pixel_statistics (`torch.FloatTensor` of shape `(batch_size, 2, num_patches or k, statistics)`, *optional*):
        With `delta_pixel_statistics`, `patch_pixel_statistics` of the patches in the context, before and after.
    pixel_change (`torch.FloatTensor` of shape `(batch_size, num_patches or k)`, *optional*):
        With `delta_pixel_statistics`, `relative_change` of those statistics (shift-tolerant like the features').
    pixel_distance (`torch.FloatTensor` of shape `(batch_size, num_patches or k)`, *optional*):
        With `delta_pixel_statistics`, their `change_magnitude`: how much, not only where (relative change peaks
        as high in an unchanged jittered pair as in a changed one).
    mirror (`torch.FloatTensor` of shape `(batch_size, 4)`, *optional*):
        With `delta_mirror_statistics`, `mirror_distances` of every patch's pixel statistics.
    pixel_summary (`torch.FloatTensor` of shape `(batch_size, 3 * num_channels)`, *optional*):
        With `delta_pixel_detail`, `pixel_summary` of every patch's pixel statistics.
    change_extent (`torch.FloatTensor` of shape `(batch_size, num_patches)`, *optional*):
        With `delta_zoom_patches`, every patch's score the zoom ranks by (not read by the module: the change box's).
    """

    before: torch.FloatTensor | None = None
    after: torch.FloatTensor | None = None
    patch_grid: tuple[int, int] | None = None
    patches: torch.LongTensor | None = None
    relative: torch.FloatTensor | None = None
    global_statistics: torch.FloatTensor | None = None
    alignment: torch.FloatTensor | None = None
    pixel_statistics: torch.FloatTensor | None = None
    pixel_change: torch.FloatTensor | None = None
    pixel_distance: torch.FloatTensor | None = None
    mirror: torch.FloatTensor | None = None
    pixel_summary: torch.FloatTensor | None = None
    change_extent: torch.FloatTensor | None = None


@dataclass
class OneDiffDeltaModuleOutput(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None
    difference_features: torch.FloatTensor | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    context_patches: torch.LongTensor | None = None
    change_extent: torch.FloatTensor | None = None


class OneDiffVisualDeltaModule(nn.Module):
    """
    Learnable delta queries that cross-attend to both images' multi-level features and their difference.

    The context holds, for every selected vision layer, the patch features of A, of B and (optionally) B-A, each
    normalised, projected to the module's width and tagged with a learned role embedding and layer embedding.
    Context layout along the sequence: `(layer, role, patch)`, role order `(before, after, difference)`.
    """

    def __init__(self, config: OneDiffConfig):
        super().__init__()
        self.config = config
        vision_size, width = config.vision_config.hidden_size, config.delta_hidden_size
        self.num_roles = 3 if config.delta_use_difference else 2
        self.num_feature_layers = len(config.delta_feature_layers)
        self.queries = nn.Parameter(torch.zeros(1, config.num_delta_queries, width))
        self.context_norm = nn.LayerNorm(vision_size, eps=config.delta_layer_norm_eps)
        self.context_projection = nn.Linear(vision_size, width)
        self.role_embeddings = nn.Parameter(torch.zeros(self.num_roles, width))
        self.layer_embeddings = nn.Parameter(torch.zeros(self.num_feature_layers, width))
        self.blocks = nn.ModuleList(
            [
                OneDiffDeltaBlock(config, has_cross_attention=i % config.cross_attention_frequency == 0)
                for i in range(config.delta_num_hidden_layers)
            ]
        )
        self.final_norm = nn.LayerNorm(width, eps=config.delta_layer_norm_eps)
        self.global_norm = self.global_projection = None
        if config.delta_global_difference:
            self.global_norm = nn.LayerNorm(3 * vision_size, eps=config.delta_layer_norm_eps)
            self.global_projection = nn.Linear(3 * vision_size, width)
        # the map's 8 numbers are on a fixed scale (positions in [-1, 1], similarities): projected without a norm
        self.alignment_projection = nn.Linear(ALIGNMENT_SIZE, width) if config.delta_alignment else None
        self.alignment_query_projection = None  # every query starts knowing the alignment of every layer
        if config.delta_alignment_queries:
            self.alignment_query_projection = nn.Linear(self.num_feature_layers * ALIGNMENT_SIZE, width)
        # one pixel token per patch in the context: statistics in A, in B, B-A (normalised pixels, a fixed scale: no
        # norm) and log1p of their change, relative and absolute
        self.pixel_projection = self.num_pixel_statistics = None
        if config.delta_pixel_statistics:
            per_channel = PIXEL_STATISTICS_PER_CHANNEL + config.delta_pixel_detail
            self.num_pixel_statistics = per_channel * config.vision_config.num_channels
            self.pixel_projection = nn.Linear(3 * self.num_pixel_statistics + 2, width)
        # with the detail, every query starts from how the whole picture's statistics moved (`pixel_summary`)
        self.pixel_summary_projection = None
        if config.delta_pixel_detail:
            self.pixel_summary_projection = nn.Linear(self.num_pixel_statistics, width)
        self.mirror_projection = nn.Linear(len(MIRRORS), width) if config.delta_mirror_statistics else None
        self.difference_prior_scale = self.pixel_prior_scale = None
        if config.delta_difference_prior:
            self.difference_prior_scale = nn.Parameter(torch.zeros(config.delta_num_attention_heads))
            if config.delta_pixel_statistics:  # the pixel tokens' own scale: their change is on another footing
                self.pixel_prior_scale = nn.Parameter(torch.zeros(config.delta_num_attention_heads))
        self.zoom_row_embeddings = self.zoom_column_embeddings = None
        if config.delta_zoom_patches:  # where a kept patch lies (zoomed contexts lose the grid's order)
            self.zoom_row_embeddings = nn.Parameter(torch.zeros(MAX_GRID_SIDE, width))
            self.zoom_column_embeddings = nn.Parameter(torch.zeros(MAX_GRID_SIDE, width))

    def relative_change(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        patch_grid: tuple[int, int],
        change: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`relative_change` with this module's `delta_shift_tolerance`."""
        return relative_change(before, after, patch_grid, self.config.delta_shift_tolerance, change)

    def zoom(self, relative: torch.Tensor, patch_grid: tuple[int, int]) -> torch.LongTensor:
        """The `delta_zoom_patches` patches that changed most (mean relative change over the layers, `relative` of
        shape `(batch_size, num_layers, num_patches)`; the pixel change counts as one more layer), in grid order:
        `(batch_size, k)`."""
        if patch_grid[0] > MAX_GRID_SIDE or patch_grid[1] > MAX_GRID_SIDE:
            raise ValueError(f"delta_zoom_patches supports patch grids up to {MAX_GRID_SIDE} a side, got {patch_grid}")
        k = min(self.config.delta_zoom_patches, relative.shape[-1])
        return relative.mean(dim=1).topk(k, dim=-1).indices.sort(dim=-1).values

    def difference_prior(self, relative: torch.Tensor, pixel_change: torch.Tensor | None = None) -> torch.Tensor:
        """
        The cross-attention bias `(batch_size, num_heads, 1, context_length)` that points the queries at changed
        patches: `scale_h * log1p(r)`, `r` = a patch's |B-A| relative to the mean over its layer's patches. It is the
        same for the A, B and B-A token of a patch, and 0 everywhere for identical images. A pixel token gets
        `pixel_scale_h * log1p(pixel_change)`.

        Args:
            relative: `relative_change` of the patches in the context, `(batch_size, num_layers, num_patches)`.
            pixel_change: with `delta_pixel_statistics`, the pixel statistics' relative change of those patches,
                `(batch_size, num_patches)`.
        """
        prior = torch.log1p(relative).unsqueeze(2).expand(-1, -1, self.num_roles, -1).flatten(1)  # (B, L*R*N)
        bias = self.difference_prior_scale.float()[None, :, None] * prior[:, None, :]  # (B, H, L*R*N)
        if self.pixel_prior_scale is not None:
            pixel_bias = self.pixel_prior_scale.float()[None, :, None] * torch.log1p(pixel_change)[:, None, :]
            bias = torch.cat([bias, pixel_bias], dim=-1)
        extra_tokens = self.num_feature_layers * (
            (self.global_projection is not None) + (self.alignment_projection is not None)
        )
        if extra_tokens:  # no prior on the global and alignment tokens
            bias = torch.cat([bias, bias.new_zeros(*bias.shape[:2], extra_tokens)], dim=-1)
        return bias.unsqueeze(2)

    def prepare_inputs(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        patch_grid: tuple[int, int],
        pixel_statistics: torch.Tensor | None = None,
    ) -> OneDiffDeltaInputs:
        """
        Everything the module reads of the pairs that no weight of it changes (see `OneDiffDeltaInputs`): the zoom,
        the difference prior's relative change and the global statistics, from raw features `before`, `after` of
        shape `(batch_size, num_layers, num_patches, vision_hidden_size)` on a `patch_grid` (height, width), and with
        `delta_pixel_statistics` the patches' `pixel_statistics` `(batch_size, 2, num_patches, statistics)`.
        """
        pixel_change = pixel_distance = mirror = summary = None
        if self.pixel_projection is not None:
            expected = (before.shape[0], 2, before.shape[2], self.num_pixel_statistics)
            if pixel_statistics is None or tuple(pixel_statistics.shape) != expected:
                got = None if pixel_statistics is None else tuple(pixel_statistics.shape)
                raise ValueError(
                    f"`delta_pixel_statistics` reads every patch's pixel statistics in both images "
                    f"(`patch_pixel_statistics`): expected shape {expected}, got {got}"
                )
            pixel_statistics = pixel_statistics.float()
            tolerance = self.config.delta_shift_tolerance
            pixel_distance = change_magnitude(pixel_statistics[:, :1], pixel_statistics[:, 1:], patch_grid, tolerance)
            pixel_distance = pixel_distance[:, 0]
            pixel_change = relative_to_mean(pixel_distance)
            if self.mirror_projection is not None:  # from every patch, before the zoom keeps a few
                mirror = mirror_distances(pixel_statistics, patch_grid)
            if self.pixel_summary_projection is not None:  # from every patch too
                summary = pixel_summary(pixel_statistics, self.config.vision_config.num_channels)
        # the raw change feeds the global tokens, the prior and the zoom: computed only when one of them is on
        zoomed = self.zoom_row_embeddings is not None
        needs_relative = zoomed or self.difference_prior_scale is not None
        change = after - before if self.global_projection is not None or needs_relative else None
        relative = self.relative_change(before, after, patch_grid, change) if needs_relative else None
        global_statistics = None
        if self.global_projection is not None:  # global statistics always summarise every patch
            global_statistics = global_change_statistics(before, after, change)  # (B, L, 3 * Dv)
        alignment = affine_alignment(before, after, patch_grid) if self.alignment_projection is not None else None
        patches = extent = None
        if zoomed:
            scores = relative if pixel_change is None else torch.cat([relative, pixel_change[:, None]], dim=1)
            extent = scores.mean(dim=1)  # what the zoom ranks by, kept for the change box
            patches = self.zoom(scores, patch_grid)
            index = patches[:, None, :, None].expand(-1, before.shape[1], -1, before.shape[-1])
            before, after = before.gather(2, index), after.gather(2, index)
            relative = relative.gather(2, patches[:, None, :].expand(-1, relative.shape[1], -1))
            if pixel_change is not None:
                pixel_change, pixel_distance = pixel_change.gather(1, patches), pixel_distance.gather(1, patches)
                index = patches[:, None, :, None].expand(-1, 2, -1, pixel_statistics.shape[-1])
                pixel_statistics = pixel_statistics.gather(2, index)
        return OneDiffDeltaInputs(
            before=before,
            after=after,
            patch_grid=patch_grid,
            patches=patches,
            relative=relative if self.difference_prior_scale is not None else None,
            global_statistics=global_statistics,
            alignment=alignment,
            pixel_statistics=pixel_statistics if pixel_change is not None else None,
            pixel_change=pixel_change,
            pixel_distance=pixel_distance,
            mirror=mirror,
            pixel_summary=summary,
            change_extent=extent,
        )

    def build_context(self, inputs: OneDiffDeltaInputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Returns:
            context of shape `(batch_size, num_layers * num_roles * num_patches [+ num_patches] [+ num_layers]
            [+ num_layers], delta_hidden_size)` (in that order: the patch tokens, one pixel token per patch with
            `delta_pixel_statistics`, the global tokens with `delta_global_difference`, the alignment tokens with
            `delta_alignment`; `k` patches instead of all with the zoom) and the difference features of shape
            `(batch_size, num_layers, num_patches or k, delta_hidden_size)` (or `None`).
        """
        projected_before = self.context_projection(self.context_norm(inputs.before))  # (B, L, N, D)
        projected_after = self.context_projection(self.context_norm(inputs.after))
        roles = [projected_before, projected_after]
        difference = None
        if self.config.delta_use_difference:
            difference = projected_after - projected_before  # exactly zero for identical images (the bias cancels)
            roles.append(difference)
        context = torch.stack(roles, dim=2)  # (B, L, R, N, D)
        context = context + self.role_embeddings[None, None, :, None, :]
        context = context + self.layer_embeddings[None, :, None, None, :]
        where = None
        if inputs.patches is not None:
            rows, columns = inputs.patches // inputs.patch_grid[1], inputs.patches % inputs.patch_grid[1]
            where = self.zoom_row_embeddings[rows] + self.zoom_column_embeddings[columns]  # (B, k, D)
            context = context + where[:, None, None]
        context = context.flatten(1, 3)
        if self.pixel_projection is not None:  # then one pixel token per patch
            statistics = inputs.pixel_statistics.to(context.dtype)
            before_pixels, after_pixels = statistics[:, 0], statistics[:, 1]
            change = torch.log1p(torch.stack([inputs.pixel_change, inputs.pixel_distance], dim=-1).to(context.dtype))
            pixels = self.pixel_projection(
                torch.cat([before_pixels, after_pixels, after_pixels - before_pixels, change], -1)
            )
            context = torch.cat([context, pixels if where is None else pixels + where], dim=1)
        if self.global_projection is not None:
            statistics = self.global_norm(inputs.global_statistics.to(projected_before.dtype))
            global_tokens = self.global_projection(statistics) + self.layer_embeddings[None]
            context = torch.cat([context, global_tokens], dim=1)  # (B, L*R*N + L, D)
        if self.alignment_projection is not None:
            alignment = self.alignment_projection(inputs.alignment.to(context.dtype)) + self.layer_embeddings[None]
            context = torch.cat([context, alignment], dim=1)  # then one alignment token per layer
        return context, difference

    def forward(
        self,
        before_features: list[torch.Tensor],
        after_features: list[torch.Tensor],
        output_attentions: bool = False,
        patch_grid: tuple[int, int] | None = None,
        pixel_statistics: torch.Tensor | None = None,
    ) -> OneDiffDeltaModuleOutput:
        """
        `before_features`, `after_features`: one `(batch_size, num_patches, vision_hidden_size)` tensor per layer, on a
        patch grid of `patch_grid` (height, width; a square grid if not given). `pixel_statistics`: with
        `delta_pixel_statistics`, `patch_pixel_statistics` of both images, `(batch_size, 2, num_patches, statistics)`.
        """
        if len(before_features) != self.num_feature_layers or len(after_features) != self.num_feature_layers:
            raise ValueError(
                f"The delta module expects features of {self.num_feature_layers} layers per image, got "
                f"{len(before_features)} and {len(after_features)}"
            )
        before, after = torch.stack(before_features, dim=1), torch.stack(after_features, dim=1)  # (B, L, N, Dv)
        if patch_grid is None:
            side = math.isqrt(before.shape[2])
            if side * side != before.shape[2]:
                raise ValueError(f"{before.shape[2]} patches are not a square grid: pass `patch_grid`")
            patch_grid = (side, side)
        return self.attend(self.prepare_inputs(before, after, patch_grid, pixel_statistics), output_attentions)

    def attend(self, inputs: OneDiffDeltaInputs, output_attentions: bool = False) -> OneDiffDeltaModuleOutput:
        """The learned part: the delta queries cross-attend to the context built from `prepare_inputs`' output."""
        context, difference = self.build_context(inputs)
        context_bias = None
        if self.difference_prior_scale is not None:
            context_bias = self.difference_prior(inputs.relative, inputs.pixel_change).to(context.dtype)
        hidden_states = self.queries.expand(context.shape[0], -1, -1)  # (B, Q, D)
        if self.mirror_projection is not None:  # every query starts knowing which mirror explains B, if one does
            hidden_states = hidden_states + self.mirror_projection(inputs.mirror.to(context.dtype))[:, None]
        if self.pixel_summary_projection is not None:  # and how the whole picture's pixels moved
            summary = inputs.pixel_summary.to(context.dtype)
            hidden_states = hidden_states + self.pixel_summary_projection(summary)[:, None]
        if self.alignment_query_projection is not None:  # and which way B turned, shrank or moved against A
            alignment = inputs.alignment.flatten(1).to(context.dtype)
            hidden_states = hidden_states + self.alignment_query_projection(alignment)[:, None]
        cross_attentions = ()
        for block in self.blocks:
            hidden_states, cross_weights = block(hidden_states, context, output_attentions, context_bias)
            if output_attentions and cross_weights is not None:
                cross_attentions += (cross_weights,)
        return OneDiffDeltaModuleOutput(
            last_hidden_state=self.final_norm(hidden_states),
            difference_features=difference,
            cross_attentions=cross_attentions if output_attentions else None,
            context_patches=inputs.patches,
            change_extent=inputs.change_extent,
        )


class OneDiffMultiModalProjector(nn.Module):
    """The paper's 2-layer MLP from a feature width to the language model's width."""

    def __init__(self, input_size: int, config: OneDiffConfig):
        super().__init__()
        text_size = config.text_config.hidden_size
        self.linear_1 = nn.Linear(input_size, text_size)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_size, text_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class OneDiffChangeHeads(nn.Module):
    """
    The discrete bottleneck of `delta_change_fields`: what changed, as one chosen value per field.

    Field k's classifier reads delta query k and scores the field's values plus "absent" (last). Delta token k is the
    embedding of the chosen value (`value_embeddings`, one row per value of every field), so the language model reads
    a few word-like tokens that fix the change and cannot phrase something the heads did not decide.
    """

    def __init__(self, config: OneDiffConfig):
        super().__init__()
        self.fields = list(config.delta_change_fields)
        self.num_classes = [len(values) + 1 for values in config.delta_change_fields.values()]  # + absent
        self.offsets = [sum(self.num_classes[:k]) for k in range(len(self.num_classes))]
        self.classifiers = nn.ModuleList(nn.Linear(config.delta_hidden_size, n) for n in self.num_classes)
        self.value_embeddings = nn.Embedding(sum(self.num_classes), config.text_config.hidden_size)
        # with `delta_change_schema`: per field other than the type, which of its classes each type allows (the
        # "absent" class for fields the type lacks); types outside the schema are never chosen. Plain lists: tensors
        # made here would be left on the meta device by from_pretrained's empty initialisation
        self.type_field = self.fields.index("type") if "type" in self.fields else None
        self.allowed = self.schema_none = None
        if config.delta_change_schema:
            schema, types = config.delta_change_schema, config.delta_change_fields["type"]
            self.schema_types = [t in schema for t in types]
            self.schema_none = types.index("none") if "none" in schema else None
            self.allowed = [
                None
                if k == self.type_field
                else [
                    [values.index(v) for v in schema[t][name]] if name in schema.get(t, {}) else [len(values)]
                    for t in types
                ]
                for k, (name, values) in enumerate(config.delta_change_fields.items())
            ]
        # with `delta_change_distinct`: (type, field a, field b, which of their class pairs name the same value)
        self.distinct = []
        for change_type, pairs in (config.delta_change_distinct or {}).items():
            for a, b in pairs:
                values_a, values_b = config.delta_change_fields[a], config.delta_change_fields[b]
                same = [[x == y for y in values_b] + [False] for x in values_a] + [[False] * (len(values_b) + 1)]
                types = config.delta_change_fields["type"]
                self.distinct.append((types.index(change_type), self.fields.index(a), self.fields.index(b), same))
        self.no_change_logit_bias = float(config.delta_no_change_logit_bias)
        self.no_change_class = None  # (field, class) of "type": "none", the class the bias favours
        if self.no_change_logit_bias:
            self.no_change_class = (self.fields.index("type"), config.delta_change_fields["type"].index("none"))

    def forward(self, queries: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per field, the scores `(batch_size, num_values + 1)` read from its delta query; at inference with
        `delta_no_change_logit_bias`, "none" of the `type` field scores that much higher."""
        logits = [classifier(queries[:, k]) for k, classifier in enumerate(self.classifiers)]
        if self.no_change_class is not None and not self.training:
            field, none = self.no_change_class
            adjustment = torch.zeros_like(logits[field][0])
            adjustment[none] = self.no_change_logit_bias
            logits[field] = logits[field] + adjustment
        return tuple(logits)

    def choose(self, logits: tuple[torch.Tensor, ...]) -> torch.LongTensor:
        """The class of every field, `(batch_size, num_fields)`: each field's highest-scoring one or, with
        `delta_change_schema`, the most likely valid change (see the config), where `delta_change_distinct`'s pairs of
        fields never name the same value. With a "none" type in the schema, the pair is unchanged exactly when the type
        head gives "none" a probability of at least 0.5 (the change probability the pipeline reports is at most 0.5),
        whatever the other fields say: their confidence about an object must not outvote the type head's "nothing
        changed", and the caption and the change probability never disagree."""
        if self.allowed is None:
            return torch.stack([scores.argmax(-1) for scores in logits], dim=1)
        type_scores = logits[self.type_field].float().log_softmax(-1)
        in_schema = torch.tensor(self.schema_types, device=type_scores.device)
        total = type_scores[:, : len(in_schema)].masked_fill(~in_schema, float("-inf"))  # (B, T)
        best, masked_scores = [], []
        for scores, allowed in zip(logits, self.allowed):
            if allowed is None:
                best.append(None)
                masked_scores.append(None)
                continue
            mask = torch.zeros(len(allowed), scores.shape[-1], dtype=torch.bool, device=scores.device)
            for row, classes in enumerate(allowed):
                mask[row, classes] = True
            scores = scores.float().log_softmax(-1)[:, None, :]  # (B, 1, C)
            masked = scores.masked_fill(~mask, float("-inf"))  # (B, T, C)
            value, index = masked.max(-1)  # the best allowed class of this field, per type
            total = total + value
            best.append(index)
            masked_scores.append((masked, value))
        for change_type, a, b, same in self.distinct:  # these two fields' best pair of different values instead
            (masked_a, value_a), (masked_b, value_b) = masked_scores[a], masked_scores[b]
            pair = masked_a[:, change_type, :, None] + masked_b[:, change_type, None, :]  # (B, Ca, Cb)
            pair = pair.masked_fill(torch.tensor(same, device=pair.device), float("-inf"))
            pair_value, flat = pair.flatten(1).max(-1)
            total[:, change_type] += pair_value - value_a[:, change_type] - value_b[:, change_type]
            best[a][:, change_type], best[b][:, change_type] = flat // pair.shape[2], flat % pair.shape[2]
        if self.schema_none is not None:  # whether anything changed is the type head's call alone (see `choose`)
            unchanged = type_scores[:, self.schema_none].exp() >= 0.5  # "none" at least as likely as all else
            total[:, self.schema_none] = torch.where(unchanged, float("inf"), float("-inf"))
        chosen_type = total.argmax(-1)  # (B,)
        rows = torch.arange(len(chosen_type), device=chosen_type.device)
        return torch.stack([chosen_type if index is None else index[rows, chosen_type] for index in best], dim=1)

    def embed(self, classes: torch.LongTensor) -> torch.Tensor:
        """The delta tokens `(batch_size, num_fields, hidden_size)` of chosen classes `(batch_size, num_fields)`."""
        if classes.ndim != 2 or classes.shape[1] != len(self.fields):
            raise ValueError(
                f"`change_labels` must have shape (batch_size, {len(self.fields)}), got {tuple(classes.shape)}"
            )
        limits = torch.tensor(self.num_classes, device=classes.device)
        if (classes < 0).any() or (classes >= limits).any():
            raise ValueError(
                f"`change_labels` holds a class outside its field's values; classes per field (absent last): "
                f"{self.num_classes}"
            )
        offsets = torch.tensor(self.offsets, device=classes.device)
        return self.value_embeddings(classes + offsets)

    @torch.no_grad()
    def init_value_embeddings(self, input_embeddings: nn.Embedding, tokenizer, values: dict[str, list[str]]) -> None:
        """Starts every value's embedding at the language model's mean input embedding of its words ("color_cast"
        -> " color cast"), and "absent" at that of " none", so the language model first reads them as those words."""
        weight = input_embeddings.weight
        for offset, names in zip(self.offsets, values.values()):
            for index, word in enumerate([*names, "none"]):
                ids = tokenizer(" " + word.replace("_", " "), add_special_tokens=False)["input_ids"]
                self.value_embeddings.weight[offset + index] = weight[ids].float().mean(0).to(weight.dtype)


class OneDiffPreTrainedModel(PreTrainedModel):
    config: OneDiffConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["OneDiffDeltaBlock"]
    _skip_keys_device_placement = [CACHE_NAME]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = False
    _supports_attention_backend = True
    _can_compile_fullgraph = False  # placeholder counts are checked with Python control flow

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        # Loading puts fresh parameters in place (all trainable): freeze again the vision parameters OneDiff never
        # reads, or DDP and the "every trainable parameter gets a gradient" rule break on a reloaded model.
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # `output_loading_info=True` gives a tuple
        base = model if isinstance(model, OneDiffModel) else model.model
        base.freeze_unused_vision_parameters()
        return loaded

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, OneDiffVisualDeltaModule):
            init.normal_(module.queries, mean=0.0, std=std)
            init.normal_(module.role_embeddings, mean=0.0, std=std)
            init.normal_(module.layer_embeddings, mean=0.0, std=std)
            if module.difference_prior_scale is not None:
                init.constant_(module.difference_prior_scale, float(self.config.delta_difference_prior))
            if module.pixel_prior_scale is not None:
                init.constant_(module.pixel_prior_scale, float(self.config.delta_difference_prior))
            if module.zoom_row_embeddings is not None:
                init.normal_(module.zoom_row_embeddings, mean=0.0, std=std)
                init.normal_(module.zoom_column_embeddings, mean=0.0, std=std)


class OneDiffModel(OneDiffPreTrainedModel):
    """The vision tower, delta module, projectors and decoder, without a language modeling head."""

    def __init__(self, config: OneDiffConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.image_projector = None  # use_image_tokens=False: the language model reads the delta tokens alone
        if config.use_image_tokens:
            self.image_projector = OneDiffMultiModalProjector(config.vision_config.hidden_size, config)
        self.delta_module = self.delta_projector = self.change_heads = None  # use_delta_module=False: images only
        if config.use_delta_module:
            self.delta_module = OneDiffVisualDeltaModule(config)
            if config.delta_change_fields:
                self.change_heads = OneDiffChangeHeads(config)
            else:
                self.delta_projector = OneDiffMultiModalProjector(config.delta_hidden_size, config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.freeze_unused_vision_parameters()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def freeze_unused_vision_parameters(self) -> None:
        """Freezes the vision layers after the deepest one OneDiff reads, and the tower's output norms and heads."""
        config = self.config
        delta_layers = config.resolved_delta_feature_layers if config.use_delta_module else []
        image_layers = [config.resolved_vision_feature_layer] if config.use_image_tokens else []
        deepest = max([*image_layers, *delta_layers])
        num_layers = config.vision_config.num_hidden_layers
        layer_lists = [
            (name, module)
            for name, module in self.vision_tower.named_modules()
            if isinstance(module, nn.ModuleList) and len(module) == num_layers
        ]
        layer_prefix = layer_lists[0][0] + "." if layer_lists else None
        if layer_lists:
            for layer in layer_lists[0][1][deepest:]:
                layer.requires_grad_(False)
        for name, module in self.vision_tower.named_modules():
            inside_layers = layer_prefix is not None and name.startswith(layer_prefix)
            if name.split(".")[-1] in _VISION_OUTPUT_MODULES and not inside_layers:
                module.requires_grad_(False)
        for name, parameter in self.vision_tower.named_parameters():
            if name.split(".")[-1] in _VISION_UNUSED_PARAMETERS:
                parameter.requires_grad_(False)

    def _patch_grid(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        patch_size = self.config.vision_config.patch_size
        return pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | OneDiffVisualOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 2, num_channels, height, width)`):
            The before and after image of each pair.
        output_attentions (`bool`, *optional*):
            Also return the vision tower's attention maps and the delta module's cross-attention maps.
        output_hidden_states (`bool`, *optional*):
            Also return all of the vision tower's hidden states.
        """
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return self._encode_pairs(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            output_delta_attentions=output_attentions,
        )

    def _encode_pairs(
        self,
        pixel_values: torch.FloatTensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        output_delta_attentions: bool = False,
    ) -> OneDiffVisualOutput:
        if pixel_values.ndim != 5 or pixel_values.shape[1] != 2:
            raise ValueError(
                "OneDiff expects `pixel_values` of shape (batch_size, 2, channels, height, width) holding a before "
                f"and an after image per pair; got shape {tuple(pixel_values.shape)}"
            )
        batch_size = pixel_values.shape[0]
        grid_height, grid_width = self._patch_grid(pixel_values)
        num_patches = grid_height * grid_width
        pixel_statistics = None
        if self.delta_module is not None and self.config.delta_pixel_statistics:  # from the float pixels, as trained
            patch_size = self.config.vision_config.patch_size
            detail = self.config.delta_pixel_detail
            pixel_statistics = patch_pixel_statistics(pixel_values.flatten(0, 1), patch_size, detail)
            pixel_statistics = pixel_statistics.unflatten(0, (batch_size, 2))
        pixel_values = pixel_values.flatten(0, 1).to(self.vision_tower.dtype)  # (2B, C, H, W): both images at once
        tower_kwargs = {"output_attentions": True} if output_attentions else {}
        vision_outputs = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True, **tower_kwargs)
        hidden_states = vision_outputs.hidden_states
        num_prefix = hidden_states[0].shape[1] - num_patches  # CLS / register tokens, if the tower has any
        if num_prefix < 0:
            raise ValueError(
                f"The vision tower returned {hidden_states[0].shape[1]} tokens for a {grid_height}x{grid_width} patch "
                "grid; is `vision_config.patch_size` right?"
            )

        def per_pair(images: torch.Tensor) -> torch.Tensor:  # (2B, ...) -> (B, 2, ...)
            return images.unflatten(0, (batch_size, 2))

        def patches(layer: int) -> torch.Tensor:  # (B, 2, N, Dv)
            return per_pair(hidden_states[layer][:, num_prefix:])

        image_embeds = None
        if self.image_projector is not None:
            image_features = patches(self.config.resolved_vision_feature_layer).flatten(0, 1)  # (2B, N, Dv)
            pool = self.config.image_token_pooling
            if pool > 1:
                grid = image_features.transpose(1, 2).unflatten(2, (grid_height, grid_width))  # (2B, Dv, h, w)
                grid = F.avg_pool2d(grid, kernel_size=pool, stride=pool, ceil_mode=True)
                image_features = grid.flatten(2).transpose(1, 2)  # (2B, N', Dv)
            image_embeds = self.image_projector(image_features).unflatten(0, (batch_size, 2)).flatten(1, 2)

        visual = OneDiffVisualOutput(
            last_hidden_state=per_pair(vision_outputs.last_hidden_state),
            pooler_output=image_embeds,
            hidden_states=tuple(per_pair(h) for h in hidden_states) if output_hidden_states else None,
            attentions=tuple(per_pair(a) for a in vision_outputs.attentions) if output_attentions else None,
        )
        if self.delta_module is not None:
            delta_layers = [patches(layer) for layer in self.config.resolved_delta_feature_layers]
            delta_outputs = self.delta_module(
                [features[:, 0] for features in delta_layers],
                [features[:, 1] for features in delta_layers],
                output_attentions=output_delta_attentions,
                patch_grid=(grid_height, grid_width),
                pixel_statistics=pixel_statistics,
            )
            if self.change_heads is not None:
                visual.change_logits = self.change_heads(delta_outputs.last_hidden_state)
                visual.delta_hidden_states = self.change_heads.embed(self.change_heads.choose(visual.change_logits))
            else:
                visual.delta_hidden_states = self.delta_projector(delta_outputs.last_hidden_state)
            visual.difference_features = delta_outputs.difference_features
            visual.delta_cross_attentions = delta_outputs.cross_attentions
            visual.delta_context_patches = delta_outputs.context_patches
            visual.delta_change_extent = delta_outputs.change_extent
        visual.patch_grid = torch.tensor([grid_height, grid_width])
        return visual

    def _placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, token_id: int | None, name: str
    ) -> torch.BoolTensor:
        if token_id is None:
            raise ValueError(f"`config.{name}_token_id` is not set; the processor's {name} token id belongs there")
        if input_ids is None:
            token_embedding = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
            return (inputs_embeds == token_embedding).all(-1)
        return input_ids == token_id

    def _scatter_features(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor,
        features: torch.Tensor,
        token_id: int | None,
        name: str,
    ) -> torch.Tensor:
        mask = self._placeholder_mask(input_ids, inputs_embeds, token_id, name)
        n_tokens, n_features = int(mask.sum()), features.shape[0] * features.shape[1]
        if n_tokens != n_features:
            raise ValueError(
                f"{name.capitalize()} features and {name} tokens do not match: tokens: {n_tokens}, features: "
                f"{n_features} ({features.shape[0]} pairs x {features.shape[1]}). Build the inputs with "
                "OneDiffProcessor, which expands the placeholders to the right count."
            )
        features = features.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1), features)

    @can_return_tuple
    @_takes_cache_under_both_names
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        change_labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | OneDiffModelOutputWithPast:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 2, num_channels, height, width)`, *optional*):
            The before and after image of each pair. Without them, placeholder tokens in `input_ids` are embedded as
            ordinary text (as LLaVA does): later generation steps, assistant models and text-only use.
        cache (`Cache`, *optional*):
            The KV cache (`past_key_values` up to transformers 5.23, still accepted).
        change_labels (`torch.LongTensor` of shape `(batch_size, num_change_fields)`, *optional*):
            With `delta_change_fields`: the true class of every field (index into the field's values, the last index
            meaning "absent"), embedded as the delta tokens instead of the change heads' choice. For training the
            language model to phrase a given change; without `pixel_values` (and with `use_image_tokens=False`) no
            image is needed at all.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if change_labels is not None and self.change_heads is None:
            raise ValueError("`change_labels` needs a model with `delta_change_fields` (change heads)")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        visual = None
        if pixel_values is not None:
            visual = self.get_image_features(
                pixel_values,
                output_attentions=kwargs.get("output_attentions"),
                output_hidden_states=kwargs.get("output_hidden_states"),
                return_dict=True,
            )
            if change_labels is not None:
                # training the language model to phrase the true change keeps it faithful to the delta tokens: it
                # never learns to second-guess them
                visual.delta_hidden_states = self.change_heads.embed(change_labels)
            inputs_embeds = self.merge_visual_features(input_ids, inputs_embeds, visual)
        elif change_labels is not None:
            inputs_embeds = self.merge_change_tokens(input_ids, inputs_embeds, change_labels)

        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{CACHE_NAME: cache},
            **kwargs,
        )
        return OneDiffModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=visual.pooler_output if visual is not None else None,
            delta_hidden_states=visual.delta_hidden_states if visual is not None else None,
            image_outputs=visual,
        )

    def merge_change_tokens(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, change_labels: torch.LongTensor
    ) -> torch.Tensor:
        """`inputs_embeds` with the embeddings of given changes (`change_labels`) on the delta placeholders: the
        language model's input without any image, for a model with change heads and no image tokens."""
        if self.change_heads is None:
            raise ValueError("`change_labels` needs a model with `delta_change_fields` (change heads)")
        if self.image_projector is not None:
            raise ValueError(
                "`change_labels` without `pixel_values` leaves the image tokens empty: it needs a model with "
                "`use_image_tokens=False`"
            )
        if input_ids is not None and not (input_ids == self.config.delta_token_id).any():
            raise ValueError(
                "`change_labels` need the prompt's delta placeholders in `input_ids`; generate() passes them again "
                "with every new token, so to generate from given changes embed them once: "
                "`generate(input_ids=ids, inputs_embeds=model.embed_changes(ids, change_labels), ...)`"
            )
        visual = OneDiffVisualOutput(delta_hidden_states=self.change_heads.embed(change_labels))
        return self.merge_visual_features(input_ids, inputs_embeds, visual)

    def merge_visual_features(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, visual: OneDiffVisualOutput
    ) -> torch.Tensor:
        """`inputs_embeds` with the image features on the image placeholders and the delta features on the delta
        placeholders."""
        image_features = visual.pooler_output
        if image_features is None:  # use_image_tokens=False: no image placeholder may remain
            image_features = inputs_embeds.new_zeros(inputs_embeds.shape[0], 0, inputs_embeds.shape[-1])
        inputs_embeds = self._scatter_features(
            input_ids, inputs_embeds, image_features, self.config.image_token_id, "image"
        )
        if visual.delta_hidden_states is not None:
            inputs_embeds = self._scatter_features(
                input_ids, inputs_embeds, visual.delta_hidden_states, self.config.delta_token_id, "delta"
            )
        return inputs_embeds


class OneDiffForConditionalGeneration(OneDiffPreTrainedModel, GenerationMixin):
    """OneDiff with a language modeling head: two images and a prompt in, a difference caption out."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: OneDiffConfig):
        super().__init__(config)
        self.model = OneDiffModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def get_image_features(
        self, pixel_values: torch.FloatTensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple | OneDiffVisualOutput:
        return self.model.get_image_features(pixel_values, **kwargs)

    @torch.no_grad()
    def embed_pairs(
        self, input_ids: torch.LongTensor, pixel_values: torch.FloatTensor, output_delta_attentions: bool = False
    ) -> tuple[torch.FloatTensor, OneDiffVisualOutput]:
        """
        The decoder's input embeddings (the prompts with their pairs' image and delta features in place) and the
        visual outputs: what `forward` computes before the decoder, for callers that encode a batch once and then
        run the decoder several times (the pipeline scores the "no change" answers, draws the change map and
        generates from one encoding: `generate(input_ids=..., inputs_embeds=...)`).
        """
        visual = self.model._encode_pairs(pixel_values, output_delta_attentions=output_delta_attentions)
        inputs_embeds = self.model.merge_visual_features(input_ids, self.get_input_embeddings()(input_ids), visual)
        return inputs_embeds, visual

    @torch.no_grad()
    def embed_changes(self, input_ids: torch.LongTensor, change_labels: torch.LongTensor) -> torch.FloatTensor:
        """
        The decoder's input embeddings for prompts whose delta tokens state given changes (a model with
        `delta_change_fields` and no image tokens): generate from them to hear how the model phrases a change, with
        no image (`generate(input_ids=..., inputs_embeds=..., attention_mask=...)`).
        """
        return self.model.merge_change_tokens(input_ids, self.get_input_embeddings()(input_ids), change_labels)

    @torch.no_grad()
    def get_delta_attention_maps(
        self, pixel_values: torch.FloatTensor | None = None, image_outputs: OneDiffVisualOutput | None = None
    ) -> OneDiffDeltaAttentionMaps:
        """
        Where the Visual Delta Module looked on each image's patch grid (the demo draws these as heatmaps).

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 2, num_channels, height, width)`)
            image_outputs (`OneDiffVisualOutput`, *optional*): an encoding with delta cross-attentions (from
                `embed_pairs(..., output_delta_attentions=True)`), instead of `pixel_values`.
        """
        if self.model.delta_module is None:
            raise ValueError("This model has no delta module (`use_delta_module=False`), hence no attention maps")
        visual = image_outputs
        if visual is None:
            visual = self.model._encode_pairs(pixel_values, output_delta_attentions=True)
        elif visual.delta_cross_attentions is None:
            raise ValueError("`image_outputs` holds no delta cross-attentions: encode with output_delta_attentions")
        grid_height, grid_width = (int(x) for x in visual.patch_grid)
        module = self.model.delta_module
        patches = visual.delta_context_patches
        kept = grid_height * grid_width if patches is None else patches.shape[1]
        # context: L*R*kept patch tokens [+ kept pixel tokens] [+ L global] [+ L alignment]
        maps = torch.stack(visual.delta_cross_attentions, dim=1)  # (B, blocks, heads, Q, context)
        maps = maps.float().mean(dim=(1, 2, 3))  # (B, context)
        patch_tokens = module.num_feature_layers * module.num_roles * kept
        roles = maps[:, :patch_tokens].unflatten(1, (module.num_feature_layers, module.num_roles, kept)).sum(dim=1)
        if module.pixel_projection is not None:  # the pixel tokens: one more role
            roles = torch.cat([roles, maps[:, None, patch_tokens : patch_tokens + kept]], dim=1)
        maps = roles  # (B, roles, kept)
        if patches is not None:  # back onto the full grid: patches outside the zoom got no attention
            full = maps.new_zeros(maps.shape[0], maps.shape[1], grid_height * grid_width)
            maps = full.scatter(2, patches[:, None, :].expand(-1, maps.shape[1], -1), maps)
        maps = maps.unflatten(2, (grid_height, grid_width))  # (B, roles, h, w): attention mass per role and patch
        change = maps.sum(dim=1)
        extent = visual.delta_change_extent
        return OneDiffDeltaAttentionMaps(
            before=maps[:, 0],
            after=maps[:, 1],
            difference=maps[:, 2] if module.num_roles == 3 else None,
            pixels=maps[:, -1] if module.pixel_projection is not None else None,
            change=change / change.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12),
            change_extent=None if extent is None else extent.float().unflatten(1, (grid_height, grid_width)),
            cross_attentions=visual.delta_cross_attentions,
        )

    @torch.no_grad()
    def answer_log_probabilities(
        self,
        answers: list[list[int]],
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
    ) -> torch.FloatTensor:
        """
        log P(answer | pair, prompt) of every answer for every pair, as greedy decoding would score it: one pass over
        the (left-padded) prompts fills the KV cache, then all answers are scored from it at once, so the images and
        prompts are encoded once whatever the number of answers. The pipeline's change probability is one minus the
        summed probability of the "no change" answers.

        Args:
            answers (`list[list[int]]`): token ids of each answer, ending with the end-of-turn token so that an
                answer is not credited with the longer answers it begins.
            input_ids, pixel_values, attention_mask: the prompts as `OneDiffProcessor` returns them for generation.
            inputs_embeds: the prompts already embedded (`embed_pairs`), instead of `input_ids` and `pixel_values`.

        Returns:
            `torch.FloatTensor` of shape `(batch_size, len(answers))`.
        """
        if not answers or any(len(answer) == 0 for answer in answers):
            raise ValueError("`answers` must be a non-empty list of non-empty token id lists")
        if inputs_embeds is None:
            inputs_embeds, _ = self.embed_pairs(input_ids, pixel_values)
        batch_size, prompt_length, num_answers = inputs_embeds.shape[0], inputs_embeds.shape[1], len(answers)
        device = inputs_embeds.device
        if attention_mask is None:
            attention_mask = torch.ones(batch_size, prompt_length, dtype=torch.long, device=device)
        attention_mask = attention_mask.long()
        # positions count real tokens only, as generation counts them for left-padded prompts
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        prompt = self(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
        )
        longest = max(len(answer) for answer in answers)
        answer_ids = torch.zeros(num_answers, longest, dtype=torch.long, device=device)
        answer_mask = torch.zeros_like(answer_ids)
        for k, answer in enumerate(answers):
            answer_ids[k, : len(answer)] = torch.tensor(answer, device=device)
            answer_mask[k, : len(answer)] = 1
        scores = prompt.logits[:, -1].float().log_softmax(-1)[:, answer_ids[:, 0]]  # first tokens: (B, K)
        if longest == 1:
            return scores
        cache = getattr(prompt, CACHE_NAME)
        cache.batch_repeat_interleave(num_answers)  # row b * K + k continues pair b with answer k
        inputs, targets = answer_ids[:, :-1].repeat(batch_size, 1), answer_ids[:, 1:].repeat(batch_size, 1)
        scored = answer_mask[:, 1:].repeat(batch_size, 1)
        continuation = self(
            input_ids=inputs,
            attention_mask=torch.cat([attention_mask.repeat_interleave(num_answers, 0), scored], dim=1),
            position_ids=attention_mask.sum(-1, keepdim=True).repeat_interleave(num_answers, 0)
            + torch.arange(longest - 1, device=device),
            cache=cache,
            use_cache=True,
        )
        token_scores = continuation.logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return scores + (token_scores * scored).sum(-1).view(batch_size, num_answers)

    @can_return_tuple
    @_takes_cache_under_both_names
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        change_labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | OneDiffCausalLMOutputWithPast:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 2, num_channels, height, width)`, *optional*):
            The before and after image of each pair, as returned by `OneDiffProcessor`.
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Target token ids (`-100` to ignore). Image/delta placeholder positions and padding (`attention_mask == 0`)
            are never scored, whatever `labels` holds there.
        cache (`Cache`, *optional*):
            The KV cache (`past_key_values` up to transformers 5.23, still accepted).
        change_labels (`torch.LongTensor` of shape `(batch_size, num_change_fields)`, *optional*):
            With `delta_change_fields`, the true change to phrase instead of the change heads' choice (see
            `OneDiffModel.forward`).
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            change_labels=change_labels,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None:
            labels = self._mask_unscored_labels(labels, input_ids, attention_mask)
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )

        return OneDiffCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            delta_hidden_states=outputs.delta_hidden_states,
            image_outputs=outputs.image_outputs,
        )

    def _mask_unscored_labels(
        self, labels: torch.LongTensor, input_ids: torch.LongTensor | None, attention_mask: torch.Tensor | None
    ) -> torch.LongTensor:
        """A model cannot predict image features or padding: those positions never count in the loss."""
        unscored = torch.zeros_like(labels, dtype=torch.bool)
        if input_ids is not None and input_ids.shape == labels.shape:
            for token_id in (self.config.image_token_id, self.config.delta_token_id):
                if token_id is not None:
                    unscored |= input_ids == token_id
        if attention_mask is not None and attention_mask.shape == labels.shape:
            unscored |= attention_mask == 0
        return labels.masked_fill(unscored, -100)

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: str | Path,
        text_model_name_or_path: str | Path,
        dtype: torch.dtype | str | None = None,
        **config_kwargs,
    ) -> "OneDiffForConditionalGeneration":
        """
        Assembles a OneDiff model from saved pretrained towers: a vision model folder (CLIP/SigLIP vision or full
        dual-encoder checkpoints, DINOv2, ViT ...) and a causal-LM folder (Llama, Qwen2, ...). The delta module and
        the projectors start from random initialisation; `config_kwargs` set the `OneDiffConfig` fields.

        When the text folder holds a tokenizer, the `<image>`/`<delta>` placeholder tokens are added to it exactly as
        `OneDiffProcessor.from_vision_text_pretrained` does, the embeddings are resized and the token ids set.
        """
        from .processing_onediff import OneDiffProcessor  # ships processing_onediff.py with checkpoints too

        load_kwargs = {"dtype": dtype} if dtype is not None else {}
        vision_model = load_vision_tower(vision_model_name_or_path, **load_kwargs)
        causal_lm = AutoModelForCausalLM.from_pretrained(text_model_name_or_path, **load_kwargs)
        text_config = causal_lm.config

        tokenizer = None
        if any((Path(text_model_name_or_path) / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
            tokenizer = OneDiffProcessor.prepare_tokenizer(AutoTokenizer.from_pretrained(text_model_name_or_path))
            config_kwargs.setdefault("image_token_id", tokenizer.convert_tokens_to_ids(OneDiffProcessor.image_token))
            config_kwargs.setdefault("delta_token_id", tokenizer.convert_tokens_to_ids(OneDiffProcessor.delta_token))

        config_kwargs.setdefault("tie_word_embeddings", bool(getattr(text_config, "tie_word_embeddings", False)))
        config = OneDiffConfig(vision_config=vision_model.config, text_config=text_config, **config_kwargs)
        with torch.device("meta"):  # the towers come from disk: never allocate (or randomly init) them twice
            model = cls(config)
        model.model.vision_tower = vision_model
        model.model.language_model = causal_lm.get_decoder()
        model.lm_head = causal_lm.get_output_embeddings()
        new_parts = (model.model.delta_module, model.model.image_projector, model.model.delta_projector)
        for new_part in (*new_parts, model.model.change_heads):
            if new_part is None:
                continue
            new_part.to_empty(device=vision_model.device)
            for module in new_part.modules():
                model._init_weights(module)
            new_part.to(vision_model.dtype)
        model.config.vision_config = vision_model.config
        model.config.text_config = causal_lm.config
        model.model.freeze_unused_vision_parameters()
        if model.config.tie_word_embeddings:
            model.tie_weights()
        if tokenizer is not None and len(tokenizer) > model.config.text_config.vocab_size:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        if tokenizer is not None and model.model.change_heads is not None:
            model.model.change_heads.init_value_embeddings(
                model.get_input_embeddings(), tokenizer, model.config.delta_change_fields
            )
        model.generation_config.pad_token_id = getattr(tokenizer, "pad_token_id", None) or text_config.pad_token_id
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
        return model


def load_vision_tower(name_or_path: str | Path, **load_kwargs) -> PreTrainedModel:
    """Loads a vision-only model; from a dual encoder (CLIP, SigLIP ...) keeps its vision half."""
    model = AutoModel.from_pretrained(name_or_path, **load_kwargs)
    if getattr(model.config, "vision_config", None) is None:
        return model
    vision_model = getattr(model, "vision_model", None)
    if not isinstance(vision_model, PreTrainedModel):
        raise ValueError(
            f"Don't know how to take the vision tower out of a {type(model).__name__} checkpoint; save the vision "
            "model alone (e.g. CLIPVisionModel.save_pretrained) and pass that folder"
        )
    return vision_model


__all__ = [
    "OneDiffChangeHeads",
    "OneDiffDeltaAttentionMaps",
    "OneDiffForConditionalGeneration",
    "OneDiffModel",
    "OneDiffPreTrainedModel",
    "OneDiffVisualDeltaModule",
]
