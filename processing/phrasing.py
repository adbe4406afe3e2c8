"""Caption templates and their inverse, the caption parser.

Every generated change is a flat ground-truth dict such as
`{"type": "color", "size": "small", "color": "red", "material": "metal", "shape": "cube", "new_value": "blue"}`.
Captions are written from templates whose `{slots}` take one of several surface words for a canonical value
("large" may read "big"). `parse_caption` compiles the same templates into regular expressions and maps any
caption back to the ground-truth dict, or to `{"type": "unparseable"}`: the generators and the parser cannot drift
apart because they read one table.
"""

import json
import re
from dataclasses import dataclass

import numpy as np

UNPARSEABLE = {"type": "unparseable"}


@dataclass(frozen=True)
class Slot:
    """A template slot: which ground-truth field it fills and the surface words of each canonical value."""

    field: str
    surfaces: dict[str, tuple[str, ...]]


COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
MATERIALS = ("rubber", "metal")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "center")

SLOTS: dict[str, Slot] = {
    # the object of a scene, named by its attributes as CLEVR-Change does
    "size": Slot("size", {"small": ("small", "tiny"), "large": ("large", "big")}),
    "color": Slot("color", {c: (c, "grey") if c == "gray" else (c,) for c in COLORS}),
    "material": Slot("material", {"rubber": ("rubber", "matte"), "metal": ("metal", "shiny", "metallic")}),
    "shape": Slot("shape", {"cube": ("cube", "block"), "sphere": ("sphere", "ball"), "cylinder": ("cylinder",)}),
    "new_color": Slot("new_value", {c: (c,) for c in COLORS}),
    "new_material": Slot("new_value", {"rubber": ("rubber", "matte"), "metal": ("metal", "shiny", "metallic")}),
    "new_material_noun": Slot("new_value", {"rubber": ("rubber",), "metal": ("metal",)}),
    # photo edits
    "strength_adv": Slot(
        "strength", {"slight": ("slightly", "a little", "a bit"), "strong": ("strongly", "a lot", "significantly")}
    ),
    "strength_adj": Slot("strength", {"slight": ("slight", "subtle", "light"), "strong": ("strong", "heavy")}),
    "strength_cmp": Slot("strength", {"slight": ("slightly", "a little"), "strong": ("much", "far")}),
    "position": Slot(
        "position",
        {
            "top left": ("top left", "upper left"),
            "top right": ("top right", "upper right"),
            "bottom left": ("bottom left", "lower left"),
            "bottom right": ("bottom right", "lower right"),
            "center": ("center", "middle"),
        },
    ),
    "cast_color": Slot("color", {c: (c,) for c in ("red", "green", "blue", "yellow")}),
    "paste_color": Slot("color", {c: (c,) for c in ("red", "green", "blue", "yellow", "white", "black")}),
    "paste_shape": Slot("shape", {"circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",)}),
    "axis": Slot("axis", {"horizontal": ("horizontally", "left to right"), "vertical": ("vertically", "upside down")}),
    "rot_dir": Slot(
        "direction", {"clockwise": ("clockwise",), "counterclockwise": ("counterclockwise", "anticlockwise")}
    ),
    "word": Slot("", {"": ("sale", "hello", "summer", "new", "love", "home", "stop", "open")}),  # not ground truth
}


# the pairs people bring (`onediff data wild`): places on a 3x3 grid, colours by name, page elements
GRID = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
WILD_COLORS = (
    "black", "white", "gray", "red", "orange", "yellow", "green", "teal", "cyan", "blue", "purple", "pink", "brown",
)  # fmt: skip
ELEMENTS = ("avatar", "badge", "banner", "button", "card", "heading", "image", "input", "label", "link", "row")


def _places(field: str, preposition: str) -> Slot:
    """A 3x3 grid cell with its preposition: "in the top left", "at the top", "on the left", "from the center"."""
    sides = {"top": "at", "bottom": "at", "left": "on", "right": "on"}
    surfaces = {}
    for cell in GRID:
        word = preposition or sides.get(cell, "in")
        surfaces[cell] = (f"{word} the {cell}",) + ((f"{word} the middle",) if cell == "center" else ())
    return Slot(field, surfaces)


SLOTS.update(
    {
        "where": _places("position", ""),
        "from_where": _places("position", "from"),
        "to_where": _places("to", "to"),
        "any_color": Slot("color", {c: (c, "grey") if c == "gray" else (c,) for c in WILD_COLORS}),
        "resize_dir": Slot("direction", {"bigger": ("bigger", "larger"), "smaller": ("smaller",)}),
        "move_dir": Slot("direction", {d: (d,) for d in ("up", "down", "left", "right")}),
        "element": Slot("element", {e: (e,) for e in ELEMENTS}),
    }
)


def _directional(field: str, increase: tuple[str, ...], decrease: tuple[str, ...]) -> Slot:
    return Slot(field, {"increase": increase, "decrease": decrease})


SLOTS.update(
    {
        "bright_cmp": _directional("direction", ("brighter", "lighter"), ("darker", "dimmer")),
        "bright_verb": _directional("direction", ("brightened", "lightened"), ("darkened", "dimmed")),
        "inc_verb": _directional("direction", ("increased", "raised", "boosted"), ("decreased", "lowered", "reduced")),
        "inc_imp": _directional("direction", ("increase", "raise", "boost"), ("decrease", "lower", "reduce")),
        "inc_noun": _directional("direction", ("increase", "boost"), ("decrease", "reduction")),
        "contrast_cmp": _directional("direction", ("more contrasty", "punchier"), ("flatter", "more washed out")),
        "sat_cmp": _directional("direction", ("more colorful", "more vivid"), ("less colorful", "more muted")),
    }
)

# change type -> templates; the object phrase is always {size} {color} {material} {shape}
OBJ = "{size} {color} {material} {shape}"
TEMPLATES: dict[str, tuple[str, ...]] = {
    # scene changes (CLEVR-Change style)
    "color": (
        f"the {OBJ} changed to {{new_color}}",
        f"the {OBJ} turned {{new_color}}",
        f"the {OBJ} became {{new_color}}",
        f"the {OBJ} was painted {{new_color}}",
        f"the color of the {OBJ} changed to {{new_color}}",
        f"someone painted the {OBJ} {{new_color}}",
    ),
    "texture": (
        f"the {OBJ} became {{new_material}}",
        f"the {OBJ} turned {{new_material}}",
        f"the {OBJ} changed its material to {{new_material_noun}}",
        f"the material of the {OBJ} changed to {{new_material_noun}}",
        f"the {OBJ} is now made of {{new_material_noun}}",
    ),
    "add": (
        f"a {OBJ} has been added",
        f"a {OBJ} was added",
        f"someone added a {OBJ}",
        f"there is a new {OBJ}",
        f"a {OBJ} appeared",
        f"a {OBJ} showed up",
    ),
    "drop": (
        f"the {OBJ} has disappeared",
        f"the {OBJ} is missing",
        f"the {OBJ} was removed",
        f"someone removed the {OBJ}",
        f"the {OBJ} is gone",
        f"the {OBJ} is no longer there",
    ),
    "move": (
        f"the {OBJ} moved",
        f"the {OBJ} changed its location",
        f"the {OBJ} has been moved",
        f"someone moved the {OBJ}",
        f"the {OBJ} is in a different location",
        f"the {OBJ} was relocated",
    ),
    "none": (
        "no change was made",
        "nothing has changed",
        "there is no difference",
        "the two images are the same",
        "no change",
        "the scene is unchanged",
    ),
    # photo edits (Image-Editing-Request / InstructPix2Pix style)
    "brightness": (
        "the image was made {strength_cmp} {bright_cmp}",
        "the photo is {strength_cmp} {bright_cmp} now",
        "the brightness was {inc_verb} {strength_adv}",
        "someone {bright_verb} the picture {strength_adv}",
        "{inc_imp} the brightness {strength_adv}",
        "a {strength_cmp} {bright_cmp} version of the photo",
    ),
    "contrast": (
        "the contrast was {inc_verb} {strength_adv}",
        "{inc_imp} the contrast {strength_adv}",
        "the image is {strength_cmp} {contrast_cmp} now",
        "the photo got {strength_cmp} {contrast_cmp}",
        "a {strength_adj} contrast {inc_noun} was applied",
    ),
    "saturation": (
        "the saturation was {inc_verb} {strength_adv}",
        "{inc_imp} the saturation {strength_adv}",
        "the colors are {strength_cmp} {sat_cmp} now",
        "the photo became {strength_cmp} {sat_cmp}",
        "a {strength_adj} saturation {inc_noun} was applied",
    ),
    "color_cast": (
        "a {strength_adj} {cast_color} tint was added",
        "the image was tinted {cast_color} {strength_adv}",
        "the photo has a {strength_adj} {cast_color} cast now",
        "add a {strength_adj} {cast_color} filter",
        "the colors shifted {strength_adv} towards {cast_color}",
    ),
    "blur": (
        "the image was blurred {strength_adv}",
        "a {strength_adj} blur was applied",
        "blur the photo {strength_adv}",
        "the photo is {strength_cmp} blurrier now",
        "the picture got {strength_cmp} less sharp",
    ),
    "sharpen": (
        "the image was sharpened {strength_adv}",
        "a {strength_adj} sharpening was applied",
        "sharpen the photo {strength_adv}",
        "the photo is {strength_cmp} sharper now",
        "the details were enhanced {strength_adv}",
    ),
    "zoom": (
        "the image was zoomed in {strength_adv}",
        "the photo was cropped {strength_adv} closer",
        "zoom in {strength_adv}",
        "a {strength_adj} zoom in was applied",
        "the view is {strength_cmp} closer now",
    ),
    "rotation": (
        "the image was rotated {rot_dir} {strength_adv}",
        "rotate the photo {rot_dir} {strength_adv}",
        "the photo was turned {rot_dir} {strength_adv}",
        "a {strength_adj} {rot_dir} rotation was applied",
        "the photo was tilted {rot_dir} {strength_adv}",
    ),
    "flip": (
        "the image was flipped {axis}",
        "flip the photo {axis}",
        "the picture is mirrored {axis}",
        "the image is now flipped {axis}",
        "someone flipped the image {axis}",
    ),
    "paste": (
        "a {paste_color} {paste_shape} was added in the {position}",
        "someone pasted a {paste_color} {paste_shape} in the {position}",
        "there is a new {paste_color} {paste_shape} in the {position}",
        "add a {paste_color} {paste_shape} to the {position}",
        "a {paste_color} {paste_shape} appeared in the {position}",
    ),
    "remove": (
        "something was erased from the {position}",
        "a region in the {position} was removed",
        "the object in the {position} was removed",
        "remove the thing in the {position}",
        "the {position} was painted over",
    ),
    "text": (
        "the word {word} was written in the {position}",
        "text was added in the {position}",
        "someone wrote {word} in the {position}",
        "add the text {word} to the {position}",
        "a caption reading {word} appeared in the {position}",
    ),
    # the pairs people bring (`onediff data wild`): objects on photographs are not named here (their names are open
    # vocabulary, not a head's class), page elements are; every place is a 3x3 grid cell
    "object_add": ("something was added {where}", "an object appeared {where}", "there is something new {where}"),
    "object_remove": ("something was removed {from_where}", "the object {where} disappeared"),
    "object_move": ("something moved {from_where} {to_where}", "the object {where} was moved {to_where}"),
    "object_replace": ("the object {where} was replaced by another one", "something else replaced the object {where}"),
    "object_recolor": ("the object {where} turned {any_color}", "the object {where} changed to {any_color}"),
    "object_resize": ("the object {where} got {resize_dir}", "the object {where} became {resize_dir}"),
    "screen_recolor": ("the {element} {where} turned {any_color}", "the {element} {where} changed to {any_color}"),
    "screen_text": ("the text of the {element} {where} changed", "the {element} {where} has a new label"),
    "screen_add": (
        "a {any_color} {element} was added {where}",
        "a {element} was added {where}",
        "a new {element} appeared {where}",
    ),
    "screen_remove": (
        "the {any_color} {element} {where} was removed",
        "the {element} {where} was removed",
        "the {element} {where} disappeared",
    ),
    "screen_move": ("the {element} {from_where} moved {move_dir} {to_where}", "the {element} was moved {to_where}"),
    "unrelated": ("the two images show different scenes", "these are two different pictures"),
    "camera": ("the camera moved slightly", "the viewpoint changed a little"),
}

SCENE_CHANGE_TYPES = ("color", "texture", "add", "drop", "move")
PHOTO_EDIT_TYPES = (
    "brightness",
    "contrast",
    "saturation",
    "color_cast",
    "blur",
    "sharpen",
    "zoom",
    "rotation",
    "flip",
    "paste",
    "remove",
    "text",
)
_SLOT_PATTERN = re.compile(r"\{(\w+)\}")


def template_slots(template: str) -> list[str]:
    return _SLOT_PATTERN.findall(template)


def render(template: str, change: dict, rng: np.random.Generator) -> str:
    """Fills a template from a ground-truth change, choosing each surface word at random."""

    def surface(match: re.Match) -> str:
        slot = SLOTS[match.group(1)]
        if not slot.field and change.get("_word"):  # free text that is not ground truth (the word drawn)
            return change["_word"]
        value = change.get(slot.field, "") if slot.field else ""
        options = slot.surfaces[value]
        return options[int(rng.integers(len(options)))]

    return _SLOT_PATTERN.sub(surface, template)


def write_references(change: dict, rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct captions of one change, each from a different template while templates last."""
    templates = TEMPLATES[change["type"]]
    order = rng.permutation(len(templates))
    return [render(templates[order[i % len(templates)]], change, rng) for i in range(count)]


def canonical_caption(change: dict | str) -> str:
    """The one wording of a change a phrasing model is taught: the change type's first template whose slots state
    exactly the change's fields (the drawn word of a text edit is not ground truth; a page element's colour is there
    only when it has one), each value in its first surface word. Sampled references mix templates, and greedy
    decoding of a model trained on the mixture blends them into captions no template has ("the photo was sharpened
    a little")."""
    change = json.loads(change) if isinstance(change, str) else change
    if change.get("type") not in TEMPLATES:
        raise ValueError(f"No templates for change type {change.get('type')!r}")
    fields = set(change) - {"type"}
    stating = [t for t in TEMPLATES[change["type"]] if all(SLOTS[name].field for name in template_slots(t))]
    exact = [t for t in stating if {SLOTS[name].field for name in template_slots(t)} == fields]
    template = (exact or stating)[0]
    return _SLOT_PATTERN.sub(lambda m: SLOTS[m.group(1)].surfaces[change[SLOTS[m.group(1)].field]][0], template)


def normalize_caption(caption: str) -> str:
    caption = caption.lower().replace("grey", "gray")
    caption = re.sub(r"[\"'`]", "", caption)
    caption = re.sub(r"[.!?,;:]+", " ", caption)
    return re.sub(r"\s+", " ", caption).strip()


def _compile(template: str) -> re.Pattern:
    pattern, position = "", 0
    for index, match in enumerate(_SLOT_PATTERN.finditer(template)):
        pattern += re.escape(template[position : match.start()])
        slot = SLOTS[match.group(1)]
        words = sorted({w.replace("grey", "gray") for ws in slot.surfaces.values() for w in ws}, key=len, reverse=True)
        pattern += f"(?P<s{index}_{match.group(1)}>{'|'.join(re.escape(w) for w in words)})"
        position = match.end()
    pattern += re.escape(template[position:])
    return re.compile(pattern)


_COMPILED = [(change_type, _compile(t)) for change_type, templates in TEMPLATES.items() for t in templates]


def parse_caption(caption: str) -> dict:
    """Maps a caption back to the ground-truth structure it states, or `{"type": "unparseable"}`.

    A caption matches when some template matches it as a whole (case, punctuation and spacing aside); captions
    made of several sentences or with words no template has are unparseable.
    """
    text = normalize_caption(caption)
    for change_type, pattern in _COMPILED:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        change = {"type": change_type}
        for group, word in match.groupdict().items():
            slot = SLOTS[group.split("_", 1)[1]]
            if slot.field:
                change[slot.field] = next(
                    value
                    for value, words in slot.surfaces.items()
                    if word in {w.replace("grey", "gray") for w in words}
                )
        return change
    return dict(UNPARSEABLE)


_NO_CHANGE = re.compile(
    r"\b(no (visible |noticeable )?(change|difference)s?|nothing (has |was )?(changed|different)|"
    r"(is|are|remains?|stays?|look|looks) (exactly )?(the same|unchanged|identical)|unchanged|identical|"
    r"there (is|are) no (change|difference)s?)\b"
)


def says_no_change(caption: str) -> bool:
    """Whether a caption says that nothing changed: our "none" phrasings, and the usual wordings of CLEVR-Change's
    and Spot-the-Diff's no-change references ("no change was made", "the scene remains the same", ...)."""
    if parse_caption(caption)["type"] == "none":
        return True
    return bool(_NO_CHANGE.search(normalize_caption(caption)))
