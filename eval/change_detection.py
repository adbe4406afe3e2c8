"""How well a model tells changed pairs from unchanged ones, and whether its change map points at the change.

- Change detection: AUROC of the pipeline's `change_probability` (changed pairs positive, no-change pairs negative)
  and the accuracy at a threshold.
- Localisation, on generated pairs that record `change_regions`: the pointing game (the change map's peak falls in a
  changed region, as CLEVR-Change papers score attention) and the IoU of the change box with the best-matching
  region; for the model and for the same model with a freshly initialised delta module (what chance looks like).
"""

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm

DEFAULT_THRESHOLD = 0.5


def roc_auc(scores, labels) -> float | None:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties count
    half), i.e. the Mann-Whitney U statistic over the pair counts. None unless both classes occur."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError(f"Got {scores.size} scores for {labels.size} labels")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[labels].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def change_detection(probabilities, is_change, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """AUROC, and at `threshold`: accuracy, and the recall of each class (a pair is judged changed when its change
    probability is at least the threshold, as `change_threshold` decides in the pipeline)."""
    probabilities, is_change = np.asarray(probabilities, dtype=np.float64), np.asarray(is_change, dtype=bool)
    judged = probabilities >= threshold
    return {
        "auroc": roc_auc(probabilities, is_change),
        "threshold": threshold,
        "accuracy": float((judged == is_change).mean()) if len(is_change) else None,
        "change_recall": float(judged[is_change].mean()) if is_change.any() else None,
        "no_change_recall": float((~judged[~is_change]).mean()) if (~is_change).any() else None,
        "change_pairs": int(is_change.sum()),
        "no_change_pairs": int((~is_change).sum()),
    }


def box_iou(a, b) -> float:
    """Intersection over union of two `[x0, y0, x1, y1]` boxes (ends exclusive)."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def point_in_regions(point, regions) -> bool:
    x, y = point
    return any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in regions)


def localisation_scores(peaks, boxes, regions) -> dict:
    """Pointing-game accuracy (the peak lies in a region) and mean best-region IoU of the boxes, over pairs with at
    least one region. `peaks` are `(x, y)` pixels, `boxes` and each pair's `regions` `[x0, y0, x1, y1]`."""
    hits, ious = [], []
    for peak, box, pair_regions in zip(peaks, boxes, regions, strict=True):
        if pair_regions:
            hits.append(point_in_regions(peak, pair_regions))
            ious.append(max(box_iou(box, region) for region in pair_regions))
    if not hits:
        return {"pointing_game": None, "mean_iou": None, "pairs": 0}
    return {"pointing_game": float(np.mean(hits)), "mean_iou": float(np.mean(ious)), "pairs": len(hits)}


def change_point(processor, change_map: np.ndarray, image_size: tuple[int, int], difference=None) -> tuple:
    """The point the pipeline gives, in pixels of an image of `image_size`: with the pixel difference,
    `change_point_in_pixels`; else the map's peak (the centre of its strongest patch)."""
    from modeling_onediff.pipeline_onediff import change_point_in_pixels

    if difference is not None:
        x, y = change_point_in_pixels(change_map, difference)
        x0, y0, x1, y1 = processor.grid_box_to_pixels((x, y, x + 1, y + 1), difference.shape, image_size)
    else:
        row, column = np.unravel_index(int(np.argmax(change_map)), change_map.shape)
        x0, y0, x1, y1 = processor.grid_box_to_pixels((column, row, column + 1, row + 1), change_map.shape, image_size)
    return (x0 + x1) / 2, (y0 + y1) / 2


def peak_and_box(
    processor, change_map: np.ndarray, image_size: tuple[int, int], extent=None, difference=None
) -> tuple[tuple[float, float], list]:
    """The point and the box the pipeline gives, in pixels of an image of `image_size`: with the change extent and
    the pixel difference, `change_point_in_pixels` and `change_box_in_pixels`; else the map's peak (the centre of
    its strongest patch) and its own box."""
    from modeling_onediff.pipeline_onediff import change_box_in_pixels, change_box_on_grid

    if extent is not None and difference is not None:
        box = change_box_in_pixels(change_map, extent, difference)
        box = processor.grid_box_to_pixels(box, difference.shape, image_size)
        return change_point(processor, change_map, image_size, difference), box
    box = processor.grid_box_to_pixels(change_box_on_grid(change_map), change_map.shape, image_size)
    return change_point(processor, change_map, image_size), box


@contextlib.contextmanager
def random_delta_module(model, seed: int = 0):
    """The model with a freshly initialised Visual Delta Module in place of its trained one (restored on exit)."""
    module_class = type(model.model.delta_module)
    trained = model.model.delta_module
    torch.manual_seed(seed)
    fresh = module_class(model.config)
    for submodule in fresh.modules():
        model._init_weights(submodule)
    model.model.delta_module = fresh.to(trained.queries.device, trained.queries.dtype).eval()
    try:
        yield model
    finally:
        model.model.delta_module = trained


def change_maps(model, processor, pairs, batch_size: int = 8, progress: bool = True) -> list[tuple]:
    """For every `(before, after)` pair (PIL images), batched: its change map, and with a zoomed delta module its
    change extent and pixel difference (else None), what the pipeline's change box is drawn from."""
    from modeling_onediff.pipeline_onediff import pixel_difference

    maps = []
    bar = tqdm(total=len(pairs), desc="change maps", unit="pair", disable=not progress)
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        pixel_values = processor(images=batch, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            result = model.get_delta_attention_maps(pixel_values.to(model.device))
        extents = [None] * len(batch) if result.change_extent is None else result.change_extent.float().cpu().numpy()
        differences = [None] * len(batch) if result.change_extent is None else pixel_difference(pixel_values).numpy()
        maps += list(zip(result.change.float().cpu().numpy(), extents, differences))
        bar.update(len(batch))
    bar.close()
    return maps


def localisation(model, processor, pairs, regions, batch_size: int = 8, progress: bool = True) -> dict:
    """Pointing game and IoU of the model's change maps, and of the same model with a random delta module."""
    sizes = [after.size for _, after in pairs]
    results = {}
    for name, context in (
        ("model", contextlib.nullcontext(model)),
        ("random_delta_module", random_delta_module(model)),
    ):
        with context as scored:
            maps = change_maps(scored, processor, pairs, batch_size, progress)
        located = [peak_and_box(processor, m, size, e, d) for (m, e, d), size in zip(maps, sizes)]
        peaks, boxes = zip(*located) if located else ((), ())
        results[name] = localisation_scores(peaks, boxes, regions)
    return results
