"""The Gradio demo against a live local server: gradio_client and a real browser (Debian's chromium)."""

import os
import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from transformers import pipeline

from onediff_idc.cli import build_parser, demo_arguments
from onediff_idc.spaces_demo.app import BOX_COLOUR, DEFAULT_MAX_NEW_TOKENS, build_demo, parse_args, task_prompts
from tiny import random_image, save_tiny_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    checkpoint = save_tiny_model(root / "model")
    for name, seed in (("before.png", 1), ("after.png", 2)):
        random_image(seed, size=64).save(root / name)
    random_image(4, size=80).resize((80, 48)).save(root / "wide.png")  # another size and aspect ratio
    (root / "notes.png").write_text("this is not an image")
    random_image(3, size=64).save(root / "cut.png")
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:300])
    Image.new("RGB", (8000, 8000), (40, 90, 160)).save(root / "huge.png")  # 64 Mpixel, a few kB on disk
    Image.new("RGB", (1, 1), (40, 90, 160)).save(root / "dot.png")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo = build_demo(str(checkpoint))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", root
    finally:
        demo.close()


def ask(client: Client, before, after, max_new_tokens: int = 6):
    return client.predict(
        handle_file(str(before)), handle_file(str(after)), "difference", "", max_new_tokens, False, 0.7,
        api_name="/caption",
    )  # fmt: skip


def expected_result(root, after: str = "after.png", max_new_tokens: int = 6, task: str = "difference") -> dict:
    """What the pipeline says of the pair, with the change probability and box (the demo must show the same)."""
    pipe = pipeline("image-difference-captioning", model=str(root / "model"), trust_remote_code=True)
    pair = {"before": str(root / "before.png"), "after": str(root / after)}
    settings = {"return_change_probability": True, "return_change_map": True}
    return pipe(pair, prompt=task_prompts()[task], max_new_tokens=max_new_tokens, **settings)


def assert_box_drawn(image_file, box: list[int]) -> None:
    """The box's outline is drawn in the box colour, and the image's middle away from it is not all that colour."""
    with Image.open(image_file) as image:
        pixels = np.asarray(image.convert("RGB"))
    x0, y0, x1, y1 = box
    outline = np.concatenate([pixels[y0, x0:x1], pixels[y0:y1, x0], pixels[y1 - 1, x0:x1], pixels[y0:y1, x1 - 1]])
    assert (outline == BOX_COLOUR).all(axis=-1).mean() > 0.95, box
    assert not (pixels == BOX_COLOUR).all(axis=-1).all()


def test_caption_probability_and_box_equal_the_pipeline_and_heatmaps_are_drawn(server):
    url, root = server
    caption, probability, before_map, after_map, boxed, notes = ask(
        Client(url, verbose=False), root / "before.png", root / "after.png"
    )
    expected = expected_result(root)
    assert caption == expected["generated_text"] and caption
    assert probability == f"{expected['change_probability']:.1%} sure something changed"
    assert os.path.isfile(before_map) and os.path.isfile(after_map)
    assert_box_drawn(boxed, expected["change_box"])
    assert notes == ""


def test_a_pair_of_different_sizes_is_framed_and_the_page_says_so(server):
    url, root = server
    caption, probability, _, _, boxed, notes = ask(Client(url, verbose=False), root / "before.png", root / "wide.png")
    expected = expected_result(root, "wide.png")
    assert expected["warnings"] == [notes] and "letterboxed to 64x64" in notes
    assert caption == expected["generated_text"]
    assert probability == f"{expected['change_probability']:.1%} sure something changed"
    assert_box_drawn(boxed, expected["change_box"])  # on the after image as uploaded, where the pipeline's box lies
    with Image.open(boxed) as image:
        assert image.size == (80, 48)


def test_a_phone_photograph_uploads(server):
    """Gradio opens every upload with Pillow before the app: HEIC reads because the app registered pillow-heif."""
    pytest.importorskip("pillow_heif")
    url, root = server
    with Image.open(root / "before.png") as image:
        image.save(root / "before.heic", quality=100)
    caption, probability, *_ = ask(Client(url, verbose=False), root / "before.heic", root / "after.png")
    pipe = pipeline("image-difference-captioning", model=str(root / "model"), trust_remote_code=True)
    pair = {"before": str(root / "before.heic"), "after": str(root / "after.png")}
    expected = pipe(pair, prompt=task_prompts()["difference"], max_new_tokens=6, return_change_probability=True)
    assert caption == expected["generated_text"] and probability.endswith("% sure something changed")


def test_an_api_call_with_only_the_two_images_uses_the_pages_defaults(server):
    url, root = server
    before, after = root / "before.png", root / "after.png"
    caption, *_ = Client(url, verbose=False).predict(
        handle_file(str(before)), handle_file(str(after)), api_name="/caption"
    )
    pipe = pipeline("image-difference-captioning", model=str(root / "model"), trust_remote_code=True)
    first_task = next(iter(task_prompts().values()))  # the task dropdown's default
    expected = pipe(
        {"before": str(before), "after": str(after)}, prompt=first_task, max_new_tokens=DEFAULT_MAX_NEW_TOKENS
    )
    assert caption == expected["generated_text"] and caption


def test_host_and_port_follow_gradios_variables_then_port(monkeypatch):
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "PORT"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("PORT", "8080")
    assert parse_args([]).port == 8080
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    args = parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7999)
    assert parse_args(["--port", "1234"]).port == 1234  # the command line wins


def test_onediff_demo_keeps_gradios_variables_unless_told(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    args = parse_args(demo_arguments(build_parser().parse_args(["demo"])))
    assert (args.host, args.port, args.model) == ("0.0.0.0", 7999, None)
    args = parse_args(demo_arguments(build_parser().parse_args(["demo", "--port", "1234", "--model", "ckpt"])))
    assert (args.host, args.port, args.model) == ("0.0.0.0", 1234, "ckpt")


@pytest.mark.parametrize("bad", ["notes.png", "cut.png", "huge.png", "dot.png", None])
def test_bad_upload_is_answered_and_the_server_stays_up(server, bad):
    url, root = server
    client = Client(url, verbose=False)
    before = handle_file(str(root / bad)) if bad else None
    with pytest.raises(AppError) as error:
        client.predict(
            before, handle_file(str(root / "after.png")), "difference", "", 6, False, 0.7, api_name="/caption"
        )
    if bad == "huge.png":
        assert "too large" in str(error.value)
    if bad == "dot.png":
        assert "too small: 1x1 pixels" in str(error.value)
    if bad is None:
        assert "Upload the before image" in str(error.value)
    caption, *_ = ask(client, root / "before.png", root / "after.png")
    assert isinstance(caption, str) and caption


def test_twenty_concurrent_requests_are_all_answered(server):
    url, root = server

    def user(_):  # each user has their own client, as separate browsers would; the heatmap files stay on the server
        return ask(Client(url, verbose=False, download_files=False), root / "before.png", root / "after.png", 4)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = [future.result(timeout=300) for future in [pool.submit(user, i) for i in range(20)]]
    assert len(answers) == 20 and len({a[0] for a in answers}) == 1  # greedy: the same caption for the same pair


@pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="chromium not installed")
def test_real_browser_uploads_clicks_and_reads_the_caption(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, root = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        page.goto(url)
        page.locator("input[type=file]").nth(0).set_input_files(str(root / "before.png"))
        page.locator("input[type=file]").nth(1).set_input_files(str(root / "after.png"))
        # click only once both uploads have reached the server and show (a click during an upload sends no image)
        expect(page.locator("#before-image img")).to_be_visible(timeout=60_000)
        expect(page.locator("#after-image img")).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Describe difference").click()
        caption = page.get_by_label("Difference caption")
        expect(caption).not_to_have_value("", timeout=60_000)
        expect(page.locator("#before-map img")).to_be_visible(timeout=60_000)
        expect(page.locator("#after-map img")).to_be_visible(timeout=60_000)
        expect(page.locator("#change-box img")).to_be_visible(timeout=60_000)
        probability = page.get_by_label("Change probability")
        expect(probability).to_have_value(re.compile(r"% sure something changed$"), timeout=60_000)
        # the box image as the browser shows it: fetched from the src the page holds
        box_source = page.locator("#change-box img").get_attribute("src")
        (tmp_path / "box.png").write_bytes(page.request.get(urljoin(url, box_source)).body())
        shot = tmp_path / "demo.png"
        page.screenshot(path=str(shot), full_page=True)
        text, shown_probability = caption.input_value(), probability.input_value()
        browser.close()
    first_task = next(iter(task_prompts()))  # the page's defaults
    expected = expected_result(root, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, task=first_task)
    assert text == expected["generated_text"] and shot.stat().st_size > 10_000
    assert shown_probability == f"{expected['change_probability']:.1%} sure something changed"
    assert_box_drawn(tmp_path / "box.png", expected["change_box"])
    artifacts = os.environ.get("ONEDIFF_TEST_ARTIFACTS")
    if artifacts:
        shutil.copy(shot, artifacts)
