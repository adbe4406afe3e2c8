"""Screenshot pairs of generated web pages, rendered by headless Chromium (Debian's chromium, Playwright's client)."""

import json
import os

import numpy as np
import pytest

from onediff_idc.processing.phrasing import says_no_change
from onediff_idc.processing.schema import make_row, png_bytes
from onediff_idc.processing.screenshots import (
    CHANGE_TYPES,
    CHROMIUM,
    DILATION_PX,
    ELEMENTS,
    GRID,
    TEMPLATE_SPLITS,
    TEMPLATES,
    ScreenshotRenderer,
    element_name,
    grid_position,
    random_page,
    screen_references,
    screenshot_pair,
)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="chromium not installed"
)
CHANGES = tuple(c for c in CHANGE_TYPES if c != "none")
POSITIONS = {name for row in GRID for name in row}


@pytest.fixture(scope="module")
def renderer():
    with ScreenshotRenderer() as opened:
        yield opened


def changed_pixels(pair) -> np.ndarray:
    before, after = (np.asarray(image) for image in pair["images"])
    return (before != after).any(axis=-1)


@pytest.mark.parametrize("split", list(TEMPLATE_SPLITS))
@pytest.mark.parametrize("change_type", CHANGES)
def test_a_change_shows_inside_its_region_and_recolor_and_text_nowhere_else(renderer, change_type, split):
    pair = screenshot_pair(np.random.default_rng(11), change_type, split, renderer)
    before, after = pair["images"]
    assert before.size == after.size == (448, 448) and before.mode == after.mode == "RGB"
    assert pair["template"] in TEMPLATE_SPLITS[split]
    change = pair["change"]
    assert change["type"] == f"screen_{change_type}" and change["element"] in ELEMENTS
    assert change["position"] in POSITIONS and change.get("to", "center") in POSITIONS
    [region] = pair["regions"]
    x0, y0, x1, y1 = region
    assert all(isinstance(v, int) for v in region) and 0 <= x0 < x1 <= 448 and 0 <= y0 < y1 <= 448
    changed = changed_pixels(pair)
    assert changed[y0:y1, x0:x1].any()
    if change_type in ("recolor", "text"):
        changed[max(y0 - DILATION_PX, 0) : y1 + DILATION_PX, max(x0 - DILATION_PX, 0) : x1 + DILATION_PX] = False
        assert not changed.any(), "pixels changed outside the recoloured or reworded element"
    row = make_row("screen-0", "screenshots", "difference", pair["images"], pair["references"], change_type,
                   change, change_regions=pair["regions"])  # fmt: skip
    assert json.loads(row["change"]) == change and row["change_regions"] == [region]


def test_the_change_dict_states_what_each_type_needs(renderer):
    needs = {
        "recolor": {"from_color", "color"},
        "text": {"old_text", "new_text"},
        "add": {"label"},
        "remove": {"label"},
        "move": {"to", "direction"},
    }
    for index, change_type in enumerate(CHANGES):
        change = screenshot_pair(np.random.default_rng(index), change_type, "train", renderer)["change"]
        assert needs[change_type] <= set(change), change
        if change_type == "recolor":
            assert change["from_color"] != change["color"]
        if change_type == "text":
            assert change["old_text"] != change["new_text"]


def test_an_unchanged_pair_is_two_identical_renders(renderer):
    for split in TEMPLATE_SPLITS:
        pair = screenshot_pair(np.random.default_rng(5), "none", split, renderer)
        assert pair["images"][0] is not pair["images"][1]
        assert not changed_pixels(pair).any()
        assert pair["change"] == {"type": "none"} and pair["regions"] == []
        assert len(set(pair["references"])) == 3 and all(says_no_change(r) for r in pair["references"])


def test_the_same_seed_gives_the_same_pngs(renderer):
    first = screenshot_pair(np.random.default_rng(3), "move", "test", renderer)
    screenshot_pair(np.random.default_rng(4), "add", "train", renderer)  # whatever the page showed in between
    second = screenshot_pair(np.random.default_rng(3), "move", "test", renderer)
    assert [png_bytes(i)["bytes"] for i in first["images"]] == [png_bytes(i)["bytes"] for i in second["images"]]
    assert (first["change"], first["regions"], first["references"]) == (
        second["change"], second["regions"], second["references"],
    )  # fmt: skip


def test_template_splits_are_disjoint_and_cover_every_family():
    splits = {name: set(families) for name, families in TEMPLATE_SPLITS.items()}
    assert set(splits) == {"train", "validation", "test"}
    assert not splits["train"] & splits["validation"] and not splits["train"] & splits["test"]
    assert not splits["validation"] & splits["test"]
    assert set().union(*splits.values()) == set(TEMPLATES) and len(TEMPLATES) >= 6
    assert len(splits["test"]) >= 2 and len(splits["validation"]) >= 1


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_every_family_offers_every_change(family):
    for seed in range(3):
        page = random_page(np.random.default_rng(seed), family)
        assert page.add_sites
        offered = {change for element in page.root.walk() for change in element.changes}
        assert {"text", "remove", "move"} <= offered
        assert any(element.color for element in page.root.walk() if "recolor" in element.changes)
        assert all(element.noun in ELEMENTS for element in page.root.walk() if element.changes)


def test_boxes_and_grid_positions_of_a_known_layout(renderer):
    cells = []
    for row, names in enumerate(GRID):
        for column, name in enumerate(names):
            left, top = 20 + column * 150, 30 + row * 150
            cells.append((name, [left, top, left + 100, top + 40]))
    divs = "".join(
        f'<div data-el="{name}" style="position:absolute;left:{x0}px;top:{y0}px;width:100px;height:40px;'
        f'background:#2563eb"></div>'
        for name, (x0, y0, _, _) in cells
    )
    image = renderer.render(f"<html><body style='margin:0;background:#fff'>{divs}</body></html>")
    boxes = renderer.boxes([name for name, _ in cells])
    for name, expected in cells:
        assert boxes[name] == expected
        assert grid_position(boxes[name], 448) == name
        assert image.getpixel((expected[0] + 50, expected[1] + 20)) == (37, 99, 235)
    assert renderer.boxes(["nowhere"]) == {}


@pytest.mark.parametrize("change_type", CHANGES)
def test_references_name_the_element(renderer, change_type):
    for split in ("train", "test"):
        pair = screenshot_pair(np.random.default_rng(21), change_type, split, renderer, num_references=4)
        change = pair["change"]
        words = (change["element"], change.get("label"), change.get("old_text"))
        assert len(pair["references"]) == 4 and len(set(pair["references"])) == 4
        for reference in pair["references"]:
            assert any(word and word in reference for word in words), (reference, change)


def test_captions_of_hand_written_changes():
    rng = np.random.default_rng(0)
    recolor = {"type": "screen_recolor", "element": "button", "label": "Save", "from_color": "blue", "color": "red",
               "position": "top right"}  # fmt: skip
    assert element_name(recolor) == "Save button"
    references = screen_references(recolor, rng, 7)
    assert "the Save button turned red" in references
    assert "the button in the top right changed from blue to red" in references
    banner = {"type": "screen_add", "element": "banner", "label": "Payment failed", "kind": "error", "color": "red",
              "position": "top"}  # fmt: skip
    assert "an error banner appeared at the top" in screen_references(banner, rng, 6)
    avatar = {"type": "screen_remove", "element": "avatar", "label": "Maya Chen", "position": "left"}
    assert "the avatar of Maya Chen was removed" in screen_references(avatar, rng, 5)
    row = {"type": "screen_move", "element": "row", "label": "Pay rent", "direction": "down", "position": "top",
           "to": "center"}  # fmt: skip
    assert 'the row "Pay rent" was moved from the top to the middle' in screen_references(row, rng, 6)
    same_cell = {**row, "to": "top"}
    assert not any("from the top" in r for r in screen_references(same_cell, rng, 6))  # no "from the top to the top"


def test_wrong_arguments_are_refused_with_clear_errors(renderer):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="change type"):
        screenshot_pair(rng, "blur", "train", renderer)
    with pytest.raises(ValueError, match="split"):
        screenshot_pair(rng, "add", "dev", renderer)
    with pytest.raises(ValueError, match="ScreenshotRenderer\\(224\\)"):
        screenshot_pair(rng, "add", "train", renderer, size=224)
    with pytest.raises(ValueError, match="page template"):
        random_page(rng, "spreadsheet")
    with pytest.raises(RuntimeError, match="not open"):
        ScreenshotRenderer().render("<html></html>")
