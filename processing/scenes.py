"""Procedural scenes in the spirit of CLEVR-Change (Park et al., 2019), rendered offline with numpy and PIL.

A scene holds 3-10 objects on a ground plane, each with a shape (cube, sphere, cylinder), one of CLEVR's 8 colours,
a material (matte rubber or shiny metal) and a size. A pair shows the scene before and after one change (color,
texture, add, drop, move) or, for distractor pairs, after only a small viewpoint and lighting change. Both kinds
of pair get the same viewpoint/lighting jitter, as in CLEVR-Change, so that any pixel difference is not a change.
Objects never overlap (every object stays fully visible) and no two objects share all four attributes, so the
references name the changed object unambiguously.
"""

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .phrasing import COLORS, MATERIALS, SCENE_CHANGE_TYPES, SHAPES, SIZES, write_references

RGB = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
RADIUS = {"small": 0.055, "large": 0.09}  # of the image side, at mid depth
MIN_MOVE = 0.25  # a move shifts the object by at least this share of the image side
SUPERSAMPLE = 2


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    material: str
    size: str
    x: float  # 0 (left) .. 1 (right)
    y: float  # 0 (back) .. 1 (front); nearer objects are drawn lower and larger

    @property
    def attributes(self) -> dict:
        return {"size": self.size, "color": self.color, "material": self.material, "shape": self.shape}

    @property
    def key(self) -> tuple:
        return (self.size, self.color, self.material, self.shape)


@dataclass(frozen=True)
class View:
    """Camera and light: jittered between the two images of every pair."""

    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0
    light_angle: float = -2.3  # radians, direction the light comes from in the image plane
    brightness: float = 1.0


def _screen(obj: SceneObject, view: View) -> tuple[float, float, float]:
    """Centre (x, y) and radius of an object on the unit canvas."""
    depth_scale = 0.75 + 0.5 * obj.y
    x = 0.5 + (obj.x - 0.5) * view.zoom + view.dx
    y = 0.5 + (0.3 + 0.6 * obj.y - 0.5) * view.zoom + view.dy
    return x, y, RADIUS[obj.size] * depth_scale * view.zoom


def _fits(obj: SceneObject, others: list[SceneObject]) -> bool:
    x, y, r = _screen(obj, View())
    for other in others:
        ox, oy, orad = _screen(other, View())
        if np.hypot(x - ox, y - oy) < 1.25 * (r + orad) + 0.02:
            return False
    return x - r > 0.06 and x + r < 0.94 and y - r > 0.06 and y + 1.1 * r < 0.94  # fully inside, even jittered


def _random_object(rng: np.random.Generator, others: list[SceneObject], attempts: int = 200) -> SceneObject | None:
    taken = {o.key for o in others}
    for _ in range(attempts):
        obj = SceneObject(
            shape=SHAPES[rng.integers(len(SHAPES))],
            color=COLORS[rng.integers(len(COLORS))],
            material=MATERIALS[rng.integers(len(MATERIALS))],
            size=SIZES[rng.integers(len(SIZES))],
            x=float(rng.uniform(0.08, 0.92)),
            y=float(rng.uniform(0.0, 1.0)),
        )
        if obj.key not in taken and _fits(obj, others):
            return obj
    return None


def random_scene(rng: np.random.Generator, min_objects: int = 3, max_objects: int = 10) -> list[SceneObject]:
    target = int(rng.integers(min_objects, max_objects + 1))
    objects: list[SceneObject] = []
    while len(objects) < target:
        obj = _random_object(rng, objects)
        if obj is None:  # the ground is full: start over rather than return fewer objects than drawn
            objects, target = [], int(rng.integers(min_objects, max_objects + 1))
            continue
        objects.append(obj)
    return objects


def random_view(rng: np.random.Generator) -> View:
    return View(
        dx=float(rng.uniform(-0.025, 0.025)),
        dy=float(rng.uniform(-0.02, 0.02)),
        zoom=float(rng.uniform(0.97, 1.03)),
        light_angle=float(-2.3 + rng.uniform(-0.35, 0.35)),
        brightness=float(rng.uniform(0.9, 1.1)),
    )


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in rgb)


def _draw_sphere(canvas: np.ndarray, cx: float, cy: float, r: float, obj: SceneObject, view: View) -> None:
    size = canvas.shape[0]
    x0, x1 = max(0, int(cx - r) - 1), min(size, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(size, int(cy + r) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    nx, ny = (xx + 0.5 - cx) / r, (yy + 0.5 - cy) / r
    inside = nx**2 + ny**2 <= 1.0
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    light = np.array([np.cos(view.light_angle), np.sin(view.light_angle), 1.2])
    light = light / np.linalg.norm(light)
    diffuse = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    base = np.array(RGB[obj.color], dtype=np.float32)
    if obj.material == "metal":  # mirror-like: strong falloff, a broad highlight and a dark reflected horizon
        half = light + np.array([0.0, 0.0, 1.0])
        half /= np.linalg.norm(half)
        specular = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0.0, 1.0) ** 12
        horizon = np.where(np.abs(ny - 0.15) < 0.12, 0.45, 1.0)[..., None]
        color = base * (0.2 + 0.95 * diffuse[..., None] ** 2) * horizon + 255 * 0.95 * specular[..., None]
    else:
        color = base * (0.4 + 0.65 * diffuse[..., None])
    patch = canvas[y0:y1, x0:x1]
    patch[inside] = np.clip(color[inside] * view.brightness, 0, 255)


def _draw_polygon_object(image: Image.Image, cx: float, cy: float, r: float, obj: SceneObject, view: View) -> None:
    """Cubes and cylinders. Rubber is shaded softly; metal mirrors its surroundings: strong contrast between faces,
    a dark horizon band and bright specular highlights, so that a texture change shows even on small objects."""
    draw = ImageDraw.Draw(image)
    base = _shade(RGB[obj.color], view.brightness)
    from_left = np.cos(view.light_angle) < 0
    metal = obj.material == "metal"
    lit, unlit = (1.0, 0.72) if not metal else (1.25, 0.4)
    left_face, right_face = (lit, unlit) if from_left else (unlit, lit)
    white = _shade((255, 255, 255), view.brightness)
    if obj.shape == "cube":
        s, depth = r * 0.85, r * 0.45
        front = [(cx - s, cy - s + depth), (cx + s - depth, cy - s + depth), (cx + s - depth, cy + s), (cx - s, cy + s)]
        top = [(cx - s, cy - s + depth), (cx - s + depth, cy - s), (cx + s, cy - s), (cx + s - depth, cy - s + depth)]
        side = [(cx + s - depth, cy - s + depth), (cx + s, cy - s), (cx + s, cy + s - depth), (cx + s - depth, cy + s)]
        draw.polygon(front, fill=_shade(base, left_face))
        draw.polygon(top, fill=_shade(base, 1.6 if metal else 1.15))
        draw.polygon(side, fill=_shade(base, right_face * 0.85))
        if metal:  # a dark reflected horizon across the front, a specular streak on top, a bright edge
            band_top, band_bottom = cy + s * 0.05, cy + s * 0.45
            draw.rectangle([cx - s, band_top, cx + s - depth, band_bottom], fill=_shade(base, 0.35))
            draw.line(
                [(cx - s + depth * 0.6, cy - s + depth * 0.5), (cx + s * 0.7, cy - s + depth * 0.5)],
                fill=white,
                width=max(1, int(r * 0.2)),
            )
            draw.line([front[0], front[1]], fill=white, width=max(1, int(r * 0.08)))
    else:  # cylinder: body, bottom and top ellipses
        w, h, e = r * 0.8, r * 1.0, r * 0.3
        body_steps = 16
        for i in range(body_steps):  # shading across the body
            t = i / (body_steps - 1)
            factor = left_face + (right_face - left_face) * t
            if metal:  # banded reflections: alternating bright and dark stripes
                factor *= 1.35 if (i // 2) % 2 == 0 else 0.6
            x_left = cx - w + 2 * w * i / body_steps
            x_right = cx - w + 2 * w * (i + 1) / body_steps
            draw.rectangle([x_left, cy - h + e, x_right, cy + h - e], fill=_shade(base, factor))
        draw.ellipse([cx - w, cy + h - 2 * e, cx + w, cy + h], fill=_shade(base, 0.8 * min(lit, unlit) / 0.72))
        draw.ellipse([cx - w, cy - h, cx + w, cy - h + 2 * e], fill=_shade(base, 1.6 if metal else 1.15))
        if metal:
            stripe = cx - w * 0.5 if from_left else cx + w * 0.3
            draw.rectangle([stripe, cy - h + e * 1.2, stripe + w * 0.22, cy + h - e * 1.1], fill=white)


def render_scene(objects: list[SceneObject], view: View, size: int) -> Image.Image:
    """Renders objects back to front over a ground-plane gradient, with soft shadows."""
    big = size * SUPERSAMPLE
    gradient = np.linspace(150, 200, big, dtype=np.float32)[:, None, None] * view.brightness
    canvas = np.broadcast_to(gradient * np.array([1.0, 1.0, 0.97]), (big, big, 3)).copy()

    shadows = Image.new("L", (big, big), 0)
    shadow_draw = ImageDraw.Draw(shadows)
    offset = -np.cos(view.light_angle) * 0.35
    for obj in objects:
        x, y, r = (v * big for v in _screen(obj, view))
        shadow_draw.ellipse([x - r + offset * r, y + 0.5 * r, x + r * 1.3 + offset * r, y + 1.1 * r], fill=90)
    shadows = np.asarray(shadows.filter(ImageFilter.GaussianBlur(big * 0.01)), dtype=np.float32) / 255.0
    canvas *= 1.0 - 0.5 * shadows[..., None]

    for obj in sorted(objects, key=lambda o: o.y):
        x, y, r = (v * big for v in _screen(obj, view))
        if obj.shape == "sphere":
            _draw_sphere(canvas, x, y, r, obj, view)
        else:
            image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
            _draw_polygon_object(image, x, y, r, obj, view)
            canvas = np.asarray(image, dtype=np.float32).copy()
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def apply_change(objects: list[SceneObject], change_type: str, rng: np.random.Generator):
    """Returns (objects after, ground truth, changed objects) for one change, or None when this scene cannot take
    it. The changed objects are `(image, object)` with image 0 (before) or 1 (after): where the change shows."""
    if change_type == "add":
        if len(objects) >= 10:
            return None
        new = _random_object(rng, objects)
        return None if new is None else ([*objects, new], {"type": "add", **new.attributes}, [(1, new)])
    index = int(rng.integers(len(objects)))
    target, others = objects[index], objects[:index] + objects[index + 1 :]
    taken = {o.key for o in others}
    if change_type == "drop":
        if len(objects) <= 3:
            return None
        return others, {"type": "drop", **target.attributes}, [(0, target)]
    if change_type == "color":
        options = [c for c in COLORS if c != target.color and replace(target, color=c).key not in taken]
        if not options:
            return None
        new = replace(target, color=options[int(rng.integers(len(options)))])
        change = {"type": "color", **target.attributes, "new_value": new.color}
        return [*others, new], change, [(0, target), (1, new)]
    if change_type == "texture":
        new = replace(target, material="metal" if target.material == "rubber" else "rubber")
        if new.key in taken:
            return None
        change = {"type": "texture", **target.attributes, "new_value": new.material}
        return [*others, new], change, [(0, target), (1, new)]
    if change_type == "move":
        for _ in range(200):
            new = replace(target, x=float(rng.uniform(0.08, 0.92)), y=float(rng.uniform(0.0, 1.0)))
            (x0, y0, _), (x1, y1, _) = _screen(target, View()), _screen(new, View())
            if np.hypot(x1 - x0, y1 - y0) >= MIN_MOVE and _fits(new, others):
                return [*others, new], {"type": "move", **target.attributes}, [(0, target), (1, new)]
        return None
    raise ValueError(f"Unknown scene change type {change_type!r}; expected one of {SCENE_CHANGE_TYPES}")


def object_box(obj: SceneObject, view: View, size: int) -> list[int]:
    """The pixel box `[x0, y0, x1, y1]` (ends exclusive) that holds the drawn object: every shape is drawn inside
    the square of its screen radius around its centre."""
    x, y, r = _screen(obj, view)
    box = [int(np.floor((x - r) * size)), int(np.floor((y - r) * size))]
    box += [int(np.ceil((x + r) * size)), int(np.ceil((y + r) * size))]
    return [min(max(v, 0), size) for v in box]


def scene_change_pair(rng: np.random.Generator, change_type: str, size: int, num_references: int = 3) -> dict:
    """One before/after pair with `change_type` in SCENE_CHANGE_TYPES or "none" (a distractor pair)."""
    while True:
        objects = random_scene(rng)
        if change_type == "none":
            after, change, changed = objects, {"type": "none"}, []
            break
        result = apply_change(objects, change_type, rng)
        if result is not None:
            after, change, changed = result
            break
    views = random_view(rng), random_view(rng)
    return {
        "images": [render_scene(objects, views[0], size), render_scene(after, views[1], size)],
        "references": write_references(change, rng, num_references),
        "change": change,
        "regions": [object_box(obj, views[image], size) for image, obj in changed],
    }


CAPTION_TEMPLATES = (
    "from left to right there is {objects}",
    "the scene shows {objects}",
    "there are {count} objects: {objects}",
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def scene_caption_sample(rng: np.random.Generator, size: int) -> dict:
    """A single rendered scene and a caption listing its objects from left to right (Coupled Sample Training)."""
    objects = random_scene(rng)
    names = [f"a {o.size} {o.color} {o.material} {o.shape}" for o in sorted(objects, key=lambda o: o.x)]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    caption = template.format(objects=listed, count=NUMBER_WORDS[len(objects)])
    return {"images": [render_scene(objects, random_view(rng), size)], "references": [caption], "change": None}
