"""End to end in a real browser: the app served in-process, driven by Playwright in headless Chromium.

Uses Debian's `chromium` (`apt-get install chromium`); nothing is downloaded or installed here. Without it, or
without the `playwright` package, the tests are skipped with the reason. Each step leaves a screenshot in
test-artifacts/browser/ at the repository root, to look at when something fails.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app import create_demo, launch_options
from conftest import garment_photo
from pipeline.errors import InputError
from pipeline.ingest import ingest_file
from pipeline.presets import MARKETPLACES

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the test extras are not installed: skipped below, with the reason
    expect = sync_playwright = None

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 120_000  # generous: a slow, shared 2-core machine; these are waits, never speed assertions
UPLOAD_LABEL = "Garment photos (JPEG, PNG, WebP, HEIC)"
LOCAL = re.compile(r"^https?://(127\.0\.0\.1|localhost)[:/]")


def chromium_path() -> str:
    if sync_playwright is None:
        pytest.skip("the browser test needs the playwright package (pip install -e '.[test]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("the browser test needs Debian's chromium on PATH (apt-get install chromium)")
    return path


@pytest.fixture
def browser_page():
    """A fresh headless Chromium page; requests that leave the machine are refused at once, not waited on."""
    executable = chromium_path()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            context.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            context.route(lambda url: not LOCAL.match(url), lambda route: route.abort())
            yield context.new_page()
            context.close()
        finally:
            expect.set_options(timeout=5_000)  # Playwright's default
            browser.close()


def serve(studio) -> Iterator[str]:
    demo = create_demo(studio)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None,
                            **launch_options(studio))
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture
def app_url(studio) -> Iterator[str]:
    yield from serve(studio)


@pytest.fixture
def diffusion_app_url(diffusion_studio) -> Iterator[str]:
    yield from serve(diffusion_studio)


# -- page helpers ----------------------------------------------------------------------------------


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def block(page, label: str):
    """The component whose block label (Image, Gallery, File) is exactly `label`."""
    return page.locator("div.block").filter(
        has=page.locator("[data-testid='block-label']", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))


def open_app(page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_role("button", name="Upload and cut out")).to_be_visible()
    # demo.load preselects the ghost model; wait for it so it cannot overwrite what the test ticks later
    expect(page.get_by_label("Ghost (ghost_01)")).to_be_checked()


def choose_files(page, *paths: Path) -> None:
    """Puts exactly `paths` in the upload box, as a seller would (an upload, refused or not, empties the box; a
    file chosen but not uploaded is cleared with the box's ×)."""
    box = block(page, UPLOAD_LABEL)
    if box.locator("tr.file").count():
        box.locator(".icon-button-wrapper").get_by_role("button", name="Clear").click()
        expect(box.locator("tr.file")).to_have_count(0)
    box.locator("input[data-testid='file-upload']").set_input_files([str(path) for path in paths])
    expect(box.locator("tr.file")).to_have_count(len(paths))
    for path in paths:
        expect(box.get_by_text(path.stem)).to_be_visible()


def pick_option(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def set_number(page, label: str, value: object) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")  # Gradio takes a number in on blur


def css_rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def garment_rows(studio) -> int:
    return studio.database.db["garments"].count


# -- the seller's whole flow -----------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_the_sellers_whole_flow_in_a_browser(browser_page, diffusion_app_url, diffusion_studio, tmp_path):
    page, studio = browser_page, diffusion_studio
    photo = tmp_path / "navy tee.jpg"
    garment_photo()[0].save(photo, quality=92)
    open_app(page, diffusion_app_url)
    expect(page.get_by_text("Upload a photo to start.")).to_be_visible()

    # 1. upload: the original and the cut-out appear, with what was detected
    choose_files(page, photo)
    page.get_by_role("button", name="Upload and cut out").click()
    cutout = block(page, "Cut-out (click to refine)").locator("img")
    expect(cutout).to_be_visible()
    expect(block(page, "Original").locator("img")).to_be_visible()
    status = page.get_by_text(re.compile(r"Cut-out by classic · status segmented · 600×800 px"))
    expect(status).to_be_visible()
    [garment] = studio.list_garments()
    assert garment["status"] == "segmented" and garment["detected_color"] == "navy"
    assert garment["original_filename"] == "navy tee.jpg" and garment["segmentation_backend"] == "classic"
    expect(page.get_by_label("Colour name", exact=True)).to_have_value("navy")
    expect(page.get_by_label("Category", exact=True)).to_have_value(garment["category"])
    expect(page.get_by_label("Garment", exact=True)).to_have_value(
        re.compile(rf"^navy tee\.jpg · {garment['category']} · "))
    if garment["category_source"] == "heuristic":  # no CLIP weights offline
        expect(page.get_by_text(re.compile(r"category from the shape heuristic"))).to_be_visible()
    expect(page.get_by_role("button", name="Colour", exact=True)).to_have_css(  # the colour picker's swatch
        "background-color", css_rgb(garment["detected_color_hex"]))
    assert cutout.evaluate("img => img.naturalWidth") > 0  # the preview really loaded
    shot(page, "01-uploaded")

    # 2. change the category in the page, and save it
    new_category = "outerwear" if garment["category"] != "outerwear" else "top"
    pick_option(page, "Category", new_category)
    page.get_by_role("button", name="Save category and colour").click()
    expect(page.get_by_text(re.compile(r"category from you"))).to_be_visible()
    expect(page.get_by_label("Category", exact=True)).to_have_value(new_category)
    expect(page.get_by_label("Garment", exact=True)).to_have_value(  # the picker's label follows the category
        re.compile(rf"^navy tee\.jpg · {new_category} · "))
    saved = studio.get_garment(garment["id"])
    assert saved["category"] == new_category and saved["category_source"] == "user"
    assert saved["detected_color"] == "navy"  # the colour was left alone
    shot(page, "02-category-saved")

    # 3. pick a persona, two marketplaces and one ratio; small, quick settings for the tiny CPU model
    page.get_by_label("Ghost (ghost_01)").uncheck()
    page.get_by_label("Marcus (mod_03)").check()
    for ratio in ("4:5", "3:4"):
        page.get_by_label(ratio, exact=True).uncheck()
    expect(page.get_by_label("1:1", exact=True)).to_be_checked()
    page.get_by_label(f"eBay {MARKETPLACES['ebay'].width}×{MARKETPLACES['ebay'].height}").check()
    page.get_by_label(f"Depop {MARKETPLACES['depop'].width}×{MARKETPLACES['depop'].height}").check()
    page.get_by_text("Prompt tuning (on-model photos)").click()
    tuning = {"Seed (-1: random)": 7, "Steps (0: default)": 2, "Width (0: default)": 256, "Height (0: default)": 256}
    expect(page.get_by_label("Pose name", exact=True)).to_be_visible()  # the panel is open
    for label, value in tuning.items():
        set_number(page, label, value)
    for label, value in tuning.items():
        expect(page.get_by_label(label, exact=True)).to_have_value(str(value))
    for label in ("Ghost (ghost_01)", "4:5", "3:4"):
        expect(page.get_by_label(label, exact=True)).not_to_be_checked()
    shot(page, "03-model-picked")

    # 4. generate: the job's details and three photos appear
    page.get_by_role("button", name="Generate photos").click()
    details = page.get_by_text(re.compile(r"mod_03 · diffusion · completed"))
    expect(details).to_be_visible(timeout=300_000)  # the first run loads the pipeline
    [job] = studio.list_generations(garment["id"])
    job = studio.get_generation(job["id"])
    assert (job["parameters"]["seeds"], job["parameters"]["steps"]) == ([7], 2), job["parameters"]
    expect(page.get_by_text(re.compile(r"Seeds \[7\] · 2 steps · .* · 256×256"))).to_be_visible()
    results = block(page, "Results")
    thumbnails = results.locator("button.thumbnail-item")
    expect(thumbnails).to_have_count(3)
    for caption in ("1:1 · ", "eBay · 1600×1600 · seed 7", "Depop · 1280×1600 · seed 7"):
        expect(results.get_by_text(caption).first).to_be_attached()
    assert job["status"] == "completed" and job["target_model_id"] == "mod_03" and job["backend"] == "diffusion"
    outputs = {o["marketplace"] or o["aspect_ratio"]: o for o in job["outputs"]}
    assert set(outputs) == {"1:1", "ebay", "depop"}
    assert all(o["is_ai_generated"] == 1 and o["seed"] == 7 for o in outputs.values())
    shot(page, "04-generated")

    # 5. select the eBay photo and star it
    favorite = page.get_by_role("button", name="☆ Favourite")
    expect(favorite).to_be_disabled()
    thumbnails.filter(has_text="eBay · 1600×1600").click()
    expect(favorite).to_be_enabled()
    expect(page.get_by_text("1600×1600 px · downloaded 0×")).to_be_visible()
    shot(page, "05-selected")
    favorite.click()
    expect(page.get_by_role("button", name="★ Favourite")).to_be_visible()
    expect(results.get_by_text("★ eBay · 1600×1600").first).to_be_attached()
    assert studio.get_output(outputs["ebay"]["id"])["is_favorite"] == 1
    assert studio.get_output(outputs["depop"]["id"])["is_favorite"] == 0
    shot(page, "06-favourite")

    # 6. download it: a real 1600 x 1600 JPEG, counted once
    with page.expect_download() as download_info:
        # the app's Download button (the gallery's own icon buttons are named "Download" too, but show no text)
        page.get_by_role("button", name="Download", exact=True).filter(has_text="Download").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".jpg")
    target = tmp_path / "downloads" / download.suggested_filename
    download.save_as(target)
    with Image.open(target) as image:
        assert image.format == "JPEG" and image.size == (1600, 1600)
        image.load()
    expect(page.get_by_text("1600×1600 px · downloaded 1×")).to_be_visible()
    job = studio.get_generation(job["id"])
    ebay = {o["id"]: o for o in job["outputs"]}[outputs["ebay"]["id"]]
    assert ebay["download_count"] == 1 and ebay["is_favorite"] == 1
    assert sum(o["download_count"] for o in job["outputs"]) == 1
    expect(block(page, "Export")).to_have_count(0)  # no empty file box until there is an export
    shot(page, "07-downloaded")

    # 7. export everything: the zip appears in a compact file box, the output info keeps its room
    page.get_by_role("button", name="Export all (zip, real cut-out first)").click()
    export = block(page, "Export")
    expect(export.get_by_role("cell", name="navy tee-photos.zip")).to_be_visible()
    expect(export.get_by_role("link")).to_have_attribute("href", re.compile(r"/navy%20tee-photos\.zip$"))
    assert export.bounding_box()["height"] < 200, export.bounding_box()
    info = page.get_by_text("1600×1600 px · downloaded 1×")
    expect(info).to_be_visible()
    assert info.bounding_box()["height"] < 40, info.bounding_box()  # one line, not squeezed into a narrow column
    shot(page, "08-exported")


# -- refused uploads -------------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's, as the app reads the header
def test_a_refused_upload_says_why_stores_nothing_and_the_page_keeps_working(browser_page, app_url, studio,
                                                                             tmp_path):
    page = browser_page
    originals = studio.settings.files_dir / "originals"
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb, optimize=True)  # 100 megapixels, a few kB on disk
    assert bomb.stat().st_size < 100_000
    open_app(page, app_url)
    # without on-model weights the reason is said once, above the cards; each persona card just says so
    unavailable = page.locator(".model-card.unavailable")
    expect(unavailable).to_have_count(11)
    expect(page.locator(".model-note")).to_have_count(1)
    expect(page.locator(".model-note")).to_contain_text("11 models unavailable")
    for card in unavailable.all():
        assert card.inner_text().strip().endswith("Unavailable") and card.bounding_box()["width"] < 300

    for path, key_phrase, name in [
        (text, "JPEG, PNG, WebP or HEIC", "10-refused-text"),
        (bomb, "(100.0 megapixels); the limit is 50 megapixels", "11-refused-bomb"),
    ]:
        with pytest.raises(InputError) as refusal:  # what the API says for this file
            ingest_file(path)
        assert key_phrase in str(refusal.value)
        choose_files(page, path)
        page.get_by_role("button", name="Upload and cut out").click()
        message = page.locator("[data-testid='toast-text']").filter(
            has_text=f"No photo could be used. {path.name}: {refusal.value}")
        expect(message).to_be_visible()
        expect(message).to_have_count(1)  # said once: no second, "Error", toast with the same text
        expect(page.locator("[data-testid='toast-body'].error")).to_have_count(0)
        box = block(page, UPLOAD_LABEL)
        expect(box.locator("tr.file")).to_have_count(0)  # emptied, ready for another file
        expect(box.locator("input[data-testid='file-upload']")).to_be_attached()
        expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no badge over the box or the picker
        shot(page, name)
        assert garment_rows(studio) == 0
        assert not originals.exists() or not [f for f in originals.rglob("*") if f.is_file()]

    # the page still works: a good photo goes through
    photo = tmp_path / "navy tee.jpg"
    garment_photo()[0].save(photo, quality=92)
    choose_files(page, photo)
    page.get_by_role("button", name="Upload and cut out").click()
    expect(block(page, "Cut-out (click to refine)").locator("img")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Cut-out by classic · status segmented"))).to_be_visible()
    assert garment_rows(studio) == 1 and studio.list_garments()[0]["original_filename"] == "navy tee.jpg"
    shot(page, "12-good-upload-after-refusals")
