"""OneDiff configuration.

OneDiff (Hu et al., "OneDiff: A Generalist Model for Image Difference Captioning", arXiv 2407.05645) couples a
siamese vision tower, a Visual Delta Module and a causal language model. `OneDiffConfig` is the composite config:
any transformers vision config, any causal-LM config, plus the delta module's and the image tokens' fields.
"""

import json

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# Registered here, written into every saved config.json: the checkpoint then loads with
# `pipeline("image-difference-captioning", model=DIR, trust_remote_code=True)` whoever saved it (a Trainer
# checkpoint included), because modeling_onediff.py imports pipeline_onediff.py and so ships it.
IMAGE_DIFFERENCE_CAPTIONING_TASK = "image-difference-captioning"
CUSTOM_PIPELINES = {
    IMAGE_DIFFERENCE_CAPTIONING_TASK: {
        "impl": "pipeline_onediff.ImageDifferenceCaptioningPipeline",
        "pt": ["AutoModelForImageTextToText"],
        "tf": [],
        "type": "multimodal",
    }
}
AUTO_MAP = {
    "AutoConfig": "configuration_onediff.OneDiffConfig",
    "AutoModel": "modeling_onediff.OneDiffForConditionalGeneration",
    "AutoModelForImageTextToText": "modeling_onediff.OneDiffForConditionalGeneration",
}


def _resolve_layer(index: int, num_layers: int, field: str) -> int:
    """Maps a hidden-states index (0 = embeddings, k = output of layer k, negatives from the end) to 0..num_layers."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"`{field}` must hold integers, got {index!r}")
    resolved = index + num_layers + 1 if index < 0 else index
    if not 0 <= resolved <= num_layers:
        raise ValueError(
            f"`{field}` index {index} is out of range for a vision tower with {num_layers} layers "
            f"(valid: {-num_layers - 1}..{num_layers})"
        )
    return resolved


class OneDiffConfig(PreTrainedConfig):
    r"""
    Configuration of a OneDiff model.

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the siamese vision tower (any transformers vision model: CLIP, SigLIP, DINOv2, ViT ...).
            Defaults to a CLIP ViT-L/14-336 vision config.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the causal language model (Llama, Qwen2, ...). Defaults to a Llama config.
        vision_feature_layer (`int`, *optional*, defaults to -2):
            Index into the vision tower's hidden states (0 = embeddings) whose patch tokens become image tokens.
        image_token_pooling (`int`, *optional*, defaults to 1):
            Average-pools the patch grid with this stride before projection (2 turns 24x24 patches into 12x12 tokens).
        delta_feature_layers (`list[int]`, *optional*):
            Hidden-states indices that feed the Visual Delta Module. Defaults to thirds of the tower's depth (8/16/24 of
            24 as in the paper).
        num_delta_queries (`int`, *optional*, defaults to 32):
            Number of learnable delta queries, i.e. of delta tokens given to the language model.
        delta_hidden_size (`int`, *optional*):
            Width of the delta module. Defaults to the vision tower's hidden size.
        delta_num_hidden_layers (`int`, *optional*, defaults to 6):
            Number of delta blocks.
        delta_num_attention_heads (`int`, *optional*):
            Attention heads of the delta module. Defaults to the vision tower's.
        delta_intermediate_size (`int`, *optional*):
            MLP width of the delta blocks. Defaults to 4x `delta_hidden_size`.
        cross_attention_frequency (`int`, *optional*, defaults to 2):
            Block `i` cross-attends to the image features when `i % cross_attention_frequency == 0` (BLIP-2's rule).
        use_delta_module (`bool`, *optional*, defaults to `True`):
            `False` builds the "no delta module" ablation: no delta module, projector or delta tokens, the language
            model sees only both images' tokens (LLaVA-style).
        delta_use_difference (`bool`, *optional*, defaults to `True`):
            Adds the explicit difference features B-A to the delta module's context, beside A and B.
        delta_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the delta blocks' MLPs.
        delta_layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the delta module's layer norms.
        delta_difference_prior (`float`, *optional*, defaults to 0.0):
            Tells the delta module where to look: every cross-attention logit on a patch gets `s_h * log1p(r)`, where
            `r` is the patch's |B-A| over the mean |B-A| of its layer (raw tower features) and `s_h` a learned scale per
            head starting at this value. 0 disables the prior (no parameter, the module as the paper describes it).
        delta_global_difference (`bool`, *optional*, defaults to `False`):
            Adds one context token per delta feature layer holding that layer's global change: the mean of B-A, the
            mean of |B-A| and the change of each channel's spread over the patches (layer-normed, projected). Global
            photo edits (brightness, blur, a colour cast) live there, not in any single patch.
        delta_alignment (`bool`, *optional*, defaults to `False`):
            Adds one context token per delta feature layer holding where B's patches came from in A, as an affine map
            fitted to soft feature matches (`affine_alignment`: 8 numbers, projected). Global statistics are the same
            for a left-right and a top-bottom mirror, or a turn either way; the map tells them apart.
        delta_alignment_queries (`bool`, *optional*, defaults to `False`):
            With `delta_alignment`, every delta query also starts with (adds a projection of) every layer's alignment,
            as `delta_mirror_statistics` does for the mirrors. The direction of a turn is one number of it (the map's
            antisymmetric part), which separates every clockwise from every counterclockwise turn of the generated
            photo edits at layers 4 and 8; read only as context tokens among hundreds, v3's heads told the two apart
            11 times in 24.
        delta_zoom_patches (`int`, *optional*, defaults to 0):
            A zoom on the change: the delta module's context keeps only the this many patches whose raw features
            changed most (|B-A| relative to the layer's mean, averaged over the delta feature layers), each tagged
            with a learned row and column embedding of where it lies. The global tokens still summarise every
            patch. 0 keeps every patch (the module as the paper describes it). Cuts the context, hence the module's
            cost, by `num_patches / delta_zoom_patches`.
        delta_shift_tolerance (`int`, *optional*, defaults to 0):
            How far (in patches) a patch may move between the images and still count as unchanged, for the prior and
            the zoom: a patch's change is then its distance to the nearest patch of the other image within this many
            rows and columns (the larger of both directions, so that added and removed objects both stand out).
            Camera jitter moves every patch a little; with 0 (same-position |B-A|) that motion reads as change.
        delta_pixel_statistics (`bool`, *optional*, defaults to `False`):
            Also reads the pixels: each patch's mean and spread of every colour channel, in both images
            (`patch_pixel_statistics`). Their shift-tolerant change joins the tower layers' in the zoom and the prior,
            and every patch in the context gets one more token holding its statistics in A, in B, their difference
            and their change. DINOv2 was trained to ignore colour: a recoloured object barely moves its features
            (less than light jitter moves a metal highlight), while its pixels change plainly.
        delta_pixel_detail (`bool`, *optional*, defaults to `False`):
            With `delta_pixel_statistics`, each patch's statistics also hold its detail (the spread of its pixels
            around their 3x3 neighbourhood's mean: fine texture, which a sharpening multiplies and a blur removes), and
            every delta query starts with (adds a projection of) how the whole picture's statistics moved
            (`pixel_summary`: the mean shift, the log ratio of the spreads and of the details). The log detail ratio
            tells every slight (150%) from every strong (400%) generated sharpening; the spread's ratio 9 in 10; v3's
            heads, reading the spread of 16 patches, 53%.
        delta_mirror_statistics (`bool`, *optional*, defaults to `False`):
            With `delta_pixel_statistics`, every delta query starts with (adds a projection of) how far B's pixel
            statistics lie from A's as they are, and from A's mirrored left to right, top to bottom and both
            (`mirror_distances`, over every patch). A pure flip makes one of them zero exactly. The feature alignment
            cannot tell the axes apart reliably: DINOv2 was trained on mirrored images, so a mirrored patch's features
            resemble the original's.
        delta_change_fields (`dict[str, list[str]]`, *optional*):
            A discrete bottleneck between the delta module and the language model, for models trained on changes with
            known structure (the package's generated pairs): field name -> its values, e.g. `{"type": ["add", "drop",
            ...], "color": ["red", ...]}`, kept in name order. Field k (in that order) gets a classifier on delta
            query k that picks one of its values or "absent" (the change has no such field), and delta token k
            becomes the learned embedding of that choice (initialised from the language model's embedding of the
            value's words). The language model then reads the change as a handful of word-like tokens and only has
            to phrase it, so its caption says what the delta module decided; the delta projector is not built.
            `None` (the default): the paper's continuous delta tokens, one per query.
        delta_change_schema (`dict[str, dict[str, list[str]]]`, *optional*):
            Which fields each change type has, and which of their values, e.g. `{"color": {"color": [...], "new_value":
            ["red", ...], ...}, "none": {}}` (`train/pretrain_delta.py` records it from the training data). With it the
            change heads choose the most likely *valid* change, jointly: for every type in the schema, its score plus
            the best allowed value of each of its fields and "absent" for the others (log-probabilities); a texture
            change to "brown" or a colour change without an object can no longer be said. Whether anything changed
            is the type head's call alone: with a "none" type in the schema, the pair is unchanged exactly when
            "none" has a probability of at least 0.5 (the other fields' confidence about some object never outvotes
            it). Needs `delta_change_fields` with a `type` field. `None`: every field's most likely value,
            independently.
        delta_change_distinct (`dict[str, list[list[str]]]`, *optional*):
            Per change type, pairs of its fields whose values must differ, e.g. `{"color": [["color", "new_value"]]}`:
            a recolouring to the colour the object already had is no change at all, so the joint choice of
            `delta_change_schema` never says one (`OneDiffConfig.change_distinct` finds the pairs in the training
            data: fields that share values but never took the same one). Needs `delta_change_schema`.
        delta_no_change_logit_bias (`float`, *optional*, defaults to 0.0):
            Added to the "none" score of the `type` change field at inference (not while training): a post-hoc logit
            adjustment towards saying "no change" (it moves the 0.5 threshold of `delta_change_schema`'s decision),
            calibrated after training on validation pairs so that unchanged pairs are called unchanged as often as
            changed pairs are called changed
            (`train/calibrate_no_change.py`). Needs `delta_change_fields` with a `type` field that has a "none" value.
        use_image_tokens (`bool`, *optional*, defaults to `True`):
            Gives the language model both images' (pooled) patch tokens beside the delta tokens. `False` leaves only
            the delta tokens (no image projector): a much shorter sequence, for models whose delta tokens carry the
            change alone.
        delta_attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the delta module's attention probabilities.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the 2-layer MLP projectors.
        image_token_id (`int`, *optional*):
            Token id of the image placeholder the processor expands to one token per image feature.
        delta_token_id (`int`, *optional*):
            Token id of the delta placeholder the processor expands to `num_delta_tokens` tokens.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the initialisation of the new (non-tower) weights.
        tie_word_embeddings (`bool`, *optional*):
            Ties `lm_head` to the input embeddings. Defaults to the text config's choice.
    """

    model_type = "onediff"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "patch_size": 14,
                "image_size": 336,
                "projection_dim": 768,
            },
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    vision_feature_layer: int = -2
    image_token_pooling: int = 1
    delta_feature_layers: list[int] | None = None
    num_delta_queries: int = 32
    delta_hidden_size: int | None = None
    delta_num_hidden_layers: int = 6
    delta_num_attention_heads: int | None = None
    delta_intermediate_size: int | None = None
    cross_attention_frequency: int = 2
    use_delta_module: bool = True
    delta_use_difference: bool = True
    delta_hidden_act: str = "gelu"
    delta_layer_norm_eps: float = 1e-6
    delta_difference_prior: float = 0.0
    delta_global_difference: bool = False
    delta_zoom_patches: int = 0
    delta_shift_tolerance: int = 0
    delta_alignment: bool = False
    delta_alignment_queries: bool = False
    delta_pixel_statistics: bool = False
    delta_pixel_detail: bool = False
    delta_mirror_statistics: bool = False
    delta_change_fields: dict[str, list[str]] | None = None
    delta_change_schema: dict[str, dict[str, list[str]]] | None = None
    delta_change_distinct: dict[str, list[list[str]]] | None = None
    delta_no_change_logit_bias: float = 0.0
    use_image_tokens: bool = True
    delta_attention_dropout: float = 0.0
    projector_hidden_act: str = "gelu"
    image_token_id: int | None = None
    delta_token_id: int | None = None
    initializer_range: float = 0.02
    tie_word_embeddings: bool | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        vision = self.vision_config
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size"):
            if not isinstance(getattr(vision, name, None), int):
                raise ValueError(
                    f"`vision_config` must be a vision transformer config with an integer `{name}`; "
                    f"{type(vision).__name__} has {getattr(vision, name, None)!r}"
                )
        num_layers = vision.num_hidden_layers

        if self.delta_feature_layers is None:
            self.delta_feature_layers = sorted({max(1, round(num_layers * k / 3)) for k in (1, 2, 3)})
        if isinstance(self.delta_feature_layers, int) or not self.delta_feature_layers:
            raise ValueError(f"`delta_feature_layers` must be a non-empty list, got {self.delta_feature_layers!r}")
        self.delta_feature_layers = list(self.delta_feature_layers)
        resolved = [_resolve_layer(i, num_layers, "delta_feature_layers") for i in self.delta_feature_layers]
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"`delta_feature_layers` names a layer twice: {self.delta_feature_layers}")
        _resolve_layer(self.vision_feature_layer, num_layers, "vision_feature_layer")

        if self.delta_hidden_size is None:
            self.delta_hidden_size = vision.hidden_size
        if self.delta_num_attention_heads is None:
            self.delta_num_attention_heads = vision.num_attention_heads
        if self.delta_intermediate_size is None:
            self.delta_intermediate_size = 4 * self.delta_hidden_size
        for name in (
            "image_token_pooling",
            "num_delta_queries",
            "delta_hidden_size",
            "delta_num_hidden_layers",
            "delta_num_attention_heads",
            "delta_intermediate_size",
            "cross_attention_frequency",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if self.delta_hidden_size % self.delta_num_attention_heads:
            raise ValueError(
                f"`delta_hidden_size` ({self.delta_hidden_size}) must be divisible by "
                f"`delta_num_attention_heads` ({self.delta_num_attention_heads})"
            )
        if not isinstance(self.use_delta_module, bool):
            raise ValueError(f"`use_delta_module` must be a bool, got {self.use_delta_module!r}")
        if not isinstance(self.delta_use_difference, bool):
            raise ValueError(f"`delta_use_difference` must be a bool, got {self.delta_use_difference!r}")
        if isinstance(self.delta_difference_prior, bool) or not isinstance(self.delta_difference_prior, (int, float)):
            raise ValueError(f"`delta_difference_prior` must be a number, got {self.delta_difference_prior!r}")
        if not isinstance(self.delta_global_difference, bool):
            raise ValueError(f"`delta_global_difference` must be a bool, got {self.delta_global_difference!r}")
        if not isinstance(self.delta_alignment, bool):
            raise ValueError(f"`delta_alignment` must be a bool, got {self.delta_alignment!r}")
        if not isinstance(self.delta_alignment_queries, bool):
            raise ValueError(f"`delta_alignment_queries` must be a bool, got {self.delta_alignment_queries!r}")
        if self.delta_alignment_queries and not self.delta_alignment:
            raise ValueError("`delta_alignment_queries` reads the alignment: it needs `delta_alignment`")
        if not isinstance(self.delta_pixel_statistics, bool):
            raise ValueError(f"`delta_pixel_statistics` must be a bool, got {self.delta_pixel_statistics!r}")
        if not isinstance(self.delta_pixel_detail, bool):
            raise ValueError(f"`delta_pixel_detail` must be a bool, got {self.delta_pixel_detail!r}")
        if self.delta_pixel_detail and not self.delta_pixel_statistics:
            raise ValueError("`delta_pixel_detail` adds to the pixel statistics: it needs `delta_pixel_statistics`")
        if not isinstance(self.delta_mirror_statistics, bool):
            raise ValueError(f"`delta_mirror_statistics` must be a bool, got {self.delta_mirror_statistics!r}")
        if self.delta_mirror_statistics and not self.delta_pixel_statistics:
            raise ValueError("`delta_mirror_statistics` reads the pixel statistics: it needs `delta_pixel_statistics`")
        zoom = self.delta_zoom_patches
        if isinstance(zoom, bool) or not isinstance(zoom, int) or zoom < 0:
            raise ValueError(f"`delta_zoom_patches` must be a non-negative integer (0: every patch), got {zoom!r}")
        shift = self.delta_shift_tolerance
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
            raise ValueError(f"`delta_shift_tolerance` must be a non-negative integer (patches), got {shift!r}")
        self._check_change_fields()
        self._check_change_schema()
        self._check_change_distinct()
        if isinstance(self.delta_no_change_logit_bias, bool) or not isinstance(
            self.delta_no_change_logit_bias, (int, float)
        ):
            raise ValueError(f"`delta_no_change_logit_bias` must be a number, got {self.delta_no_change_logit_bias!r}")
        if self.delta_no_change_logit_bias and "none" not in (self.delta_change_fields or {}).get("type", []):
            raise ValueError(
                '`delta_no_change_logit_bias` needs `delta_change_fields` whose `type` field has a "none" value'
            )
        if not isinstance(self.use_image_tokens, bool):
            raise ValueError(f"`use_image_tokens` must be a bool, got {self.use_image_tokens!r}")
        if not self.use_image_tokens and not self.use_delta_module:
            raise ValueError("With `use_image_tokens=False` and `use_delta_module=False` the model would see nothing")
        if not 0.0 <= self.delta_attention_dropout < 1.0:
            raise ValueError(f"`delta_attention_dropout` must be in [0, 1), got {self.delta_attention_dropout!r}")
        for name in ("image_token_id", "delta_token_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"`{name}` must be a non-negative integer or None, got {value!r}")
        if self.image_token_id is not None and self.image_token_id == self.delta_token_id:
            raise ValueError(f"`image_token_id` and `delta_token_id` must differ, both are {self.image_token_id}")

        if self.tie_word_embeddings is None:
            self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}
        if not getattr(self, "custom_pipelines", None):
            self.custom_pipelines = CUSTOM_PIPELINES

    def _check_change_fields(self) -> None:
        fields = self.delta_change_fields
        if fields is None:
            return
        if not isinstance(fields, dict) or not fields:
            raise ValueError(f"`delta_change_fields` must be a non-empty dict (field -> values), got {fields!r}")
        for name, values in fields.items():
            if (
                not isinstance(values, (list, tuple))
                or not values
                or not all(isinstance(v, str) and v for v in values)
                or len(set(values)) != len(values)
            ):
                raise ValueError(f"`delta_change_fields[{name!r}]` must be a list of distinct strings, got {values!r}")
        # in name order, as config.json stores them (its keys are sorted): field k must stay field k on reload
        self.delta_change_fields = {str(name): list(values) for name, values in sorted(fields.items())}
        if not self.use_delta_module:
            raise ValueError("`delta_change_fields` needs the delta module (`use_delta_module=True`)")
        if len(fields) > self.num_delta_queries:
            raise ValueError(
                f"{len(fields)} `delta_change_fields` need as many delta queries; `num_delta_queries` is "
                f"{self.num_delta_queries}"
            )

    def with_overrides(self, **overrides) -> "OneDiffConfig":
        """A copy with `overrides` set and every field checked again (`from_pretrained(path, **overrides)` sets them
        after the checks, so e.g. `delta_change_fields` would keep an order that a reload permutes)."""
        return type(self)(**{**self.to_dict(), **overrides})

    def _check_change_schema(self) -> None:
        schema = self.delta_change_schema
        if schema is None:
            return
        fields = self.delta_change_fields or {}
        if "type" not in fields:
            raise ValueError("`delta_change_schema` needs `delta_change_fields` with a `type` field")
        if not isinstance(schema, dict) or not schema:
            raise ValueError(
                f"`delta_change_schema` must be a non-empty dict (type -> field -> values), got {schema!r}"
            )
        checked = {}
        for change_type, type_fields in sorted(schema.items()):
            if change_type not in fields["type"]:
                raise ValueError(f"`delta_change_schema` names type {change_type!r}, not one of {fields['type']}")
            if not isinstance(type_fields, dict):
                raise ValueError(f"`delta_change_schema[{change_type!r}]` must be a dict (field -> values)")
            checked[change_type] = {}
            for name, values in sorted(type_fields.items()):
                if name == "type" or name not in fields:
                    raise ValueError(
                        f"`delta_change_schema[{change_type!r}]` names field {name!r}, not one of the other fields "
                        f"of `delta_change_fields`"
                    )
                if not isinstance(values, (list, tuple)) or not values or not set(values) <= set(fields[name]):
                    raise ValueError(
                        f"`delta_change_schema[{change_type!r}][{name!r}]` must list some of {fields[name]}, "
                        f"got {values!r}"
                    )
                checked[change_type][name] = sorted(set(values), key=fields[name].index)
        self.delta_change_schema = checked

    def _check_change_distinct(self) -> None:
        distinct = self.delta_change_distinct
        if distinct is None:
            return
        schema = self.delta_change_schema
        if not schema:
            raise ValueError("`delta_change_distinct` needs `delta_change_schema` (the joint choice it constrains)")
        if not isinstance(distinct, dict):
            raise ValueError(f"`delta_change_distinct` must be a dict (type -> field pairs), got {distinct!r}")
        checked = {}
        for change_type, pairs in sorted(distinct.items()):
            type_fields = schema.get(change_type)
            if type_fields is None:
                raise ValueError(
                    f"`delta_change_distinct` names type {change_type!r}, which `delta_change_schema` lacks"
                )
            if not isinstance(pairs, (list, tuple)) or not all(
                isinstance(pair, (list, tuple)) and len(set(pair)) == len(pair) == 2 and set(pair) <= set(type_fields)
                for pair in pairs
            ):
                raise ValueError(
                    f"`delta_change_distinct[{change_type!r}]` must list pairs of two of its fields "
                    f"{sorted(type_fields)}, got {pairs!r}"
                )
            used = [field for pair in pairs for field in pair]
            if len(used) != len(set(used)):  # the joint choice decodes pairs, not chains of fields
                raise ValueError(f"`delta_change_distinct[{change_type!r}]` uses a field in two pairs: {pairs!r}")
            checked[change_type] = sorted(sorted(pair) for pair in pairs)
        self.delta_change_distinct = checked

    @staticmethod
    def change_distinct(changes: list[str | dict]) -> dict[str, list[list[str]]]:
        """The `delta_change_distinct` of these changes (dicts or JSON): per type, the pairs of its fields that share
        some values but never took the same value in one change (a field in at most one pair, first come first)."""
        schema = OneDiffConfig.change_schema(changes)
        equal: set[tuple[str, str, str]] = set()
        for change in changes:
            if not change:
                continue
            change = json.loads(change) if isinstance(change, str) else change
            names = sorted(name for name in change if name != "type")
            for k, a in enumerate(names):
                for b in names[k + 1 :]:
                    if str(change[a]) == str(change[b]):
                        equal.add((str(change["type"]), a, b))
        distinct = {}
        for change_type, type_fields in schema.items():
            pairs, used = [], set()
            names = sorted(type_fields)
            for k, a in enumerate(names):
                for b in names[k + 1 :]:
                    shared = set(type_fields[a]) & set(type_fields[b])
                    if shared and (change_type, a, b) not in equal and not {a, b} & used:
                        pairs.append([a, b])
                        used |= {a, b}
            if pairs:
                distinct[change_type] = pairs
        return distinct

    @staticmethod
    def change_schema(changes: list[str | dict]) -> dict[str, dict[str, list[str]]]:
        """The `delta_change_schema` of these changes (dicts or JSON): each type's fields and the values they took."""
        schema: dict[str, dict[str, set]] = {}
        for change in changes:
            if not change:  # pairs without a known change (None, "")
                continue
            change = json.loads(change) if isinstance(change, str) else change
            type_fields = schema.setdefault(str(change["type"]), {})
            for name, value in change.items():
                if name != "type":
                    type_fields.setdefault(name, set()).add(str(value))
        return {t: {name: sorted(values) for name, values in f.items()} for t, f in schema.items()}

    def encode_change(self, change: str | dict) -> list[int]:
        """A change (a dict, or its JSON as the datasets' `change` column holds it) as the class of every field of
        `delta_change_fields`: its value's index, or the field's "absent" class (one past its values)."""
        if not self.delta_change_fields:
            raise ValueError("`encode_change` needs `delta_change_fields`")
        change = json.loads(change) if isinstance(change, str) else change
        unknown = sorted(set(change) - set(self.delta_change_fields))
        if unknown:
            raise ValueError(f"The change {change} has field(s) {unknown} the model's `delta_change_fields` lack")
        classes = []
        for name, values in self.delta_change_fields.items():
            value = change.get(name)
            if value is not None and str(value) not in values:
                raise ValueError(f"The change {change}: {name}={value!r} is not one of the model's values {values}")
            classes.append(len(values) if value is None else values.index(str(value)))
        return classes

    def knows_change(self, change: str | dict) -> bool:
        """Whether `encode_change` can state this change (every field and value among `delta_change_fields`)."""
        if not change:
            return False
        change = json.loads(change) if isinstance(change, str) else change
        fields = self.delta_change_fields or {}
        return all(name in fields and str(value) in fields[name] for name, value in change.items())

    def decode_change(self, classes: list[int]) -> dict[str, str]:
        """The change that classes per field stand for (`encode_change`'s inverse; absent fields left out)."""
        if not self.delta_change_fields or len(classes) != len(self.delta_change_fields):
            raise ValueError(f"`decode_change` needs one class per field of `delta_change_fields`, got {classes}")
        fields = self.delta_change_fields.items()
        return {name: values[int(k)] for (name, values), k in zip(fields, classes) if int(k) < len(values)}

    @property
    def num_delta_tokens(self) -> int:
        """Delta tokens the language model reads: one per change field with `delta_change_fields`, else one per
        delta query (none without the delta module)."""
        if not self.use_delta_module:
            return 0
        return len(self.delta_change_fields) if self.delta_change_fields else self.num_delta_queries

    @property
    def resolved_delta_feature_layers(self) -> list[int]:
        """`delta_feature_layers` as non-negative hidden-states indices."""
        return [
            _resolve_layer(i, self.vision_config.num_hidden_layers, "delta_feature_layers")
            for i in self.delta_feature_layers
        ]

    @property
    def resolved_vision_feature_layer(self) -> int:
        """`vision_feature_layer` as a non-negative hidden-states index."""
        return _resolve_layer(self.vision_feature_layer, self.vision_config.num_hidden_layers, "vision_feature_layer")

    def num_image_tokens(self, image_height: int, image_width: int | None = None) -> int:
        """Image tokens per image for a processed image of this size (patch grid after pooling; 0 with
        `use_image_tokens=False`)."""
        if not self.use_image_tokens:
            return 0
        image_width = image_height if image_width is None else image_width
        patch, pool = self.vision_config.patch_size, self.image_token_pooling
        return -(-(image_height // patch) // pool) * -(-(image_width // patch) // pool)


__all__ = ["OneDiffConfig"]
