"""End to end in a real browser: the app served in-process, driven by Playwright in headless Chromium.

Uses Debian's `chromium` (`apt-get install chromium`); nothing is downloaded or installed here. Without it, or
without the `playwright` package, the tests are skipped with the reason. Each step leaves a screenshot in
test-artifacts/browser/ at the repository root, to look at when something fails.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app import create_demo, launch_options
from conftest import garment_photo
from pipeline.errors import InputError
from pipeline.ingest import ingest_file

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the test extras are not installed: skipped below, with the reason
    expect = sync_playwright = None

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 120_000  # generous: a slow, shared 2-core machine; these are waits, never speed assertions
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1440, "height": 900}
# What a seller must never read: backend names, Hub ids (owner/name), error numbers.
DEVELOPER_WORDS = re.compile(r"\b(classic|(?-i:SAM)|CLIP|sdxl|sd15|diffusion|heuristic|backend|HF_HUB|Errno|errno)\b|"
                             r"\b[\w.-]+/[\w.-]*(?:sam|clip|diffusion|controlnet|adapter)[\w.-]*\b", re.IGNORECASE)
LOCAL = re.compile(r"^https?://(127\.0\.0\.1|localhost)[:/]")


def chromium_path() -> str:
    if sync_playwright is None:
        pytest.skip("the browser test needs the playwright package (pip install -e '.[test]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("the browser test needs Debian's chromium on PATH (apt-get install chromium)")
    return path


@pytest.fixture(params=[PHONE, DESKTOP], ids=["phone", "desktop"])
def browser_page(request):
    """A fresh headless Chromium page, phone or desktop sized; requests that leave the machine are refused at
    once, not waited on."""
    executable = chromium_path()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            phone = request.param == PHONE
            context = browser.new_context(viewport=request.param, accept_downloads=True, is_mobile=phone,
                                          has_touch=phone, device_scale_factor=1)
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


# -- page helpers ----------------------------------------------------------------------------------


class Seller:
    """The page, and every tap the seller makes on it (a file picker's choice counts as one)."""

    def __init__(self, page, size: str):
        self.page, self.size, self.taps = page, size, 0

    def tap(self, locator) -> None:
        locator.click()
        self.taps += 1

    def add_photos(self, *paths: Path) -> None:
        self.taps += 2  # "Add photos", then the choice in the phone's picker
        self.page.locator("input[type=file]").first.set_input_files([str(path) for path in paths])

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{self.size}-{name}.png"), full_page=True)

    def no_wider_than_the_screen(self) -> None:
        width = self.page.evaluate("document.documentElement.scrollWidth")
        wide = self.page.evaluate("""limit => [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > limit + 1)
            .filter(e => parseFloat(getComputedStyle(e).minWidth) > 200 || e.scrollWidth > limit + 40).slice(-8).map(e => `${e.tagName}.${e.className}#${e.id}: ${Math.round(e.getBoundingClientRect().right)}`)""",
                                  self.page.viewport_size["width"])
        assert width <= self.page.viewport_size["width"], f"the page is {width} px wide: {wide}"


def block(page, label: str):
    """The component whose block label (Image, Gallery, File) is exactly `label`."""
    return page.locator("div.block").filter(
        has=page.locator("[data-testid='block-label']", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))


def open_app(page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_role("button", name=re.compile("Add photos of your garments"))).to_be_visible()
    expect(page.get_by_text("Photograph each garment flat")).to_be_visible()  # the page's load has run


def open_tab(page, name: str) -> None:
    """A tab by name; on a phone the tabs that do not fit are behind the "More tabs" (…) button."""
    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.is_visible():
        tab.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).click()


def photos(tmp_path: Path) -> list[Path]:
    """Three different garments: a navy tee, a red one, a green one, each a phone photo on a wooden floor."""
    paths = []
    for name, colour, seed in [("navy tee", (31, 42, 68), 0), ("red tee", (170, 30, 40), 1),
                               ("green tee", (40, 120, 60), 2)]:
        path = tmp_path / f"{name}.jpg"
        garment_photo(garment_rgb=colour, seed=seed)[0].save(path, quality=92)
        paths.append(path)
    return paths


# -- the seller's whole flow, on a phone and on a desktop ------------------------------------------


@pytest.mark.timeout(600)
def cut_captions(page, gallery: str) -> list[str]:
    """The captions of a gallery's thumbnails that do not show whole."""
    return page.locator(f"{gallery} .caption-label").evaluate_all(
        "labels => labels.filter(l => l.scrollWidth > l.clientWidth + 1 || l.scrollHeight > l.clientHeight + 1)"
        ".map(l => l.textContent)")


def stored_soon(page, check, seconds: float = 15.0) -> bool:
    """Whether `check()` (a look at the database) comes true within `seconds`, as the page's request lands."""
    for _ in range(int(seconds * 10)):
        if check():
            return True
        page.wait_for_timeout(100)
    return check()


def test_the_sellers_whole_flow_in_a_browser(browser_page, app_url, studio, tmp_path, request):
    page = browser_page
    size = "phone" if page.viewport_size == PHONE else "desktop"
    seller = Seller(page, size)
    navy, red, green = photos(tmp_path)
    open_app(page, app_url)

    # the first screen speaks to a seller: no backend names, Hub ids or error numbers; one line about personas
    first_screen = page.locator("body").inner_text()
    assert not DEVELOPER_WORDS.search(first_screen), DEVELOPER_WORDS.search(first_screen)
    seller.no_wider_than_the_screen()
    seller.shot("01-first-screen")

    # one photo to a downloadable eBay photo: add it, make photos (eBay is ticked), download
    seller.add_photos(navy)
    closet = page.locator("#closet")
    expect(closet.locator("button.thumbnail-item")).to_have_count(1)
    expect(page.get_by_text("Added 1 garment.")).to_be_visible()
    expect(page.locator("#cutout img")).to_be_visible()
    expect(page.get_by_label("eBay", exact=True)).to_be_checked()  # a new seller's marketplace
    expect(page.get_by_text(re.compile("On-model photos .* need a GPU"))).to_have_count(1)  # one line, no dead cards
    # the category, and the question when the studio is unsure, comes before the tap tools: on a phone, right
    # after the picture and its note
    top = "element => element.getBoundingClientRect().top"
    assert page.locator("#category").evaluate(top) < page.get_by_label("Remove", exact=True).evaluate(top)
    assert not DEVELOPER_WORDS.search(page.locator("body").inner_text())
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_hidden()  # nothing to stop yet
    expect(page.get_by_text("Prompt tuning (on-model photos)")).to_be_hidden()  # ghost shots take no prompt
    seller.no_wider_than_the_screen()
    seller.shot("02-one-photo-added")
    make = page.get_by_role("button", name="Make photos", exact=True)
    make_photos_y = make.evaluate("button => button.getBoundingClientRect().top + window.scrollY")
    seller.tap(make)
    results = page.locator("#results")
    expect(results.locator("button.thumbnail-item")).to_have_count(1)
    expect(results.get_by_text(re.compile(r"eBay · 1600×1600")).first).to_be_attached()
    results.locator("button.thumbnail-item").first.click()  # a tapped photo opens large enough to check it
    preview = results.locator(".preview img").first
    expect(preview).to_be_visible()
    assert preview.bounding_box()["height"] >= 0.6 * min(page.viewport_size["width"], 560), preview.bounding_box()
    seller.shot("02b-photo-opened")
    download_button = page.get_by_role("button", name="Download", exact=True).filter(has_text="Download")
    expect(download_button).to_be_enabled()
    with page.expect_download() as download_info:
        seller.tap(download_button)
    single_photo_taps = seller.taps
    assert single_photo_taps <= 4
    download = download_info.value
    assert re.fullmatch(r"navy-[a-z-]+-ebay-1\.jpg", download.suggested_filename), \
        download.suggested_filename
    target = tmp_path / "downloads" / download.suggested_filename
    download.save_as(target)
    with Image.open(target) as image:
        assert image.format == "JPEG" and image.size == (1600, 1600)
    page.get_by_role("button", name="☆ Favourite").click()
    expect(page.get_by_role("button", name="★ Favourite")).to_be_visible()
    seller.no_wider_than_the_screen()
    seller.shot("03-first-ebay-photo")

    # the rest of the closet: two more photos at once, then review the second one and fix its category
    seller.taps = 0
    seller.add_photos(red, green)
    expect(closet.locator("button.thumbnail-item")).to_have_count(3)
    expect(page.get_by_text("Added 2 garments.")).to_be_visible()
    garments = {g["original_filename"]: g for g in studio.list_garments()}
    assert set(garments) == {"navy tee.jpg", "red tee.jpg", "green tee.jpg"}
    assert all(g["status"] == "segmented" for g in garments.values())
    red_garment = garments["red tee.jpg"]
    new_category = "outerwear" if red_garment["category"] != "outerwear" else "dress"
    title = page.locator("#listing-title textarea, #listing-title input").first
    expect(title).to_have_value(red_garment["title"])  # suggested from what the studio saw: "Red T-Shirt"
    assert red_garment["title"].startswith("Red ")
    # "Save cut-out" before any tap says there is nothing to save and leaves every field usable (an error used to
    # cover them all with error badges that blocked the category's chips)
    page.get_by_role("button", name="Save cut-out", exact=True).click()
    expect(page.get_by_text(re.compile("Nothing to save"))).to_be_visible()
    expect(page.locator("#category").get_by_text("Error", exact=True)).to_have_count(0)
    page.get_by_label(new_category, exact=True).check()
    expect(title).not_to_have_value(red_garment["title"])  # the suggestion follows the category: "Red Jacket"
    saved = studio.get_garment(red_garment["id"])
    assert saved["category"] == new_category and saved["category_source"] == "user"
    expect(title).to_have_value(saved["title"])
    expect(closet.get_by_text(saved["title"]).first).to_be_attached()
    title.fill("Vintage red tee, barely worn")
    title.press("Enter")
    expect(closet.get_by_text("Vintage red tee, barely worn").first).to_be_attached()
    seller.no_wider_than_the_screen()
    seller.shot("04-category-fixed")
    saved = studio.get_garment(red_garment["id"])
    assert saved["title"] == "Vintage red tee, barely worn" and saved["title_source"] == "user"
    # a tap on a category right after the title (its box loses focus at that moment) is kept, and the next one too
    for category in ("dress" if new_category == "outerwear" else "outerwear", new_category):
        page.get_by_label(category, exact=True).check()
        expect(page.get_by_label(category, exact=True)).to_be_checked()
        assert stored_soon(page, lambda: studio.get_garment(red_garment["id"])["category"] == category), category
    expect(title).to_have_value("Vintage red tee, barely worn")

    # generate for the whole closet (on light grey this time), then one eBay zip for all of it
    page.get_by_label("Light grey", exact=True).check()
    seller.tap(page.get_by_role("button", name="Make photos for the whole closet"))
    expect(stop).to_be_visible()  # while the photos are made
    expect(page.get_by_text(re.compile("Photos made for 3 garments"))).to_be_visible()
    expect(stop).to_be_hidden()
    jobs = studio.list_generations(limit=50)
    assert sorted(job["status"] for job in jobs) == ["completed"] * 4  # the first photo's job, and three more
    seller.shot("05-closet-made")
    expect(page.get_by_label("Zip for", exact=True)).to_have_value("eBay")
    seller.tap(page.get_by_role("button", name="Zip the closet's photos"))
    zip_box = block(page, "Your zip")
    link = zip_box.get_by_role("link").first
    expect(link).to_be_visible()
    with page.expect_download() as download_info:
        seller.tap(link)
    closet_taps = seller.taps  # add, pick the photos, make for the whole closet, zip, the zip's link
    assert closet_taps <= 6
    archive = zipfile.ZipFile(download_info.value.path())
    names = archive.namelist()
    folders = {name.split("/")[0] for name in names if "/" in name}
    assert len(folders) == 3 and "listing.csv" in names, names
    assert "vintage-red-tee-barely-worn" in folders, folders  # the seller's own title names the files
    assert all(re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+-ebay-\d+\.jpg", name) for name in names if "/" in name), names
    rows = list(csv.DictReader(io.StringIO(archive.read("listing.csv").decode())))
    assert {row["category"] for row in rows} >= {new_category}
    assert len(rows) == 3
    assert set(cut_captions(page, "#closet")) <= {"Vintage red tee, barely worn"}
    seller.no_wider_than_the_screen()
    seller.shot("06-zipped")
    height = page.evaluate("document.documentElement.scrollHeight")

    # the closet tab: every garment as a thumbnail, and the starred photo
    open_tab(page, "Closet")
    expect(page.get_by_label("Added", exact=True)).to_be_visible()
    expect(page.locator("#closet-all button.thumbnail-item")).to_have_count(3)
    expect(page.locator("#favourites button.thumbnail-item")).to_have_count(1)
    # a suggested title reads whole under its thumbnail, on a phone too; a seller's long one may end in "…"
    assert set(cut_captions(page, "#closet-all")) <= {"Vintage red tee, barely worn"}
    seller.no_wider_than_the_screen()
    seller.shot("07-closet-tab")

    # compare the navy tee's two runs: only the background differs, and it is marked
    open_tab(page, "Compare")
    navy_runs = [job for job in studio.list_generations(limit=50) if job["garment_id"] == garments["navy tee.jpg"]["id"]]
    assert len(navy_runs) == 2
    navy = f"navy {garments['navy tee.jpg']['category']}"
    for side, label in (("Run A", f"{navy} · Ghost on white"), ("Run B", f"{navy} · Ghost on light grey")):
        page.get_by_label(side, exact=True).click()
        page.get_by_role("option", name=re.compile(re.escape(label))).first.click()
    expect(page.get_by_text("≠")).to_have_count(1)
    expect(page.locator("strong", has_text="background")).to_be_visible()
    seller.no_wider_than_the_screen()
    seller.shot("08-compare-tab")

    # deleting is out of the way and asks first
    open_tab(page, "Closet")
    page.get_by_text("Delete a garment").click()
    page.get_by_label("Garment to delete", exact=True).click()
    page.get_by_role("option", name=re.compile(r"^Green ")).click()
    expect(page.get_by_role("button", name="Yes, delete it for good")).to_have_count(0)
    page.get_by_role("button", name="Delete this garment…").click()
    page.get_by_role("button", name="Yes, delete it for good").click()
    expect(page.locator("#closet-all button.thumbnail-item")).to_have_count(2)
    assert {g["original_filename"] for g in studio.list_garments()} == {"navy tee.jpg", "red tee.jpg"}
    open_tab(page, "Studio")
    expect(page.locator("#closet button.thumbnail-item")).to_have_count(2)
    seller.shot("09-garment-deleted")
    (ARTIFACTS / f"{size}-measures.json").write_text(json.dumps(
        {"page_height_px": height, "make_photos_button_y_px": round(make_photos_y),
         "taps_one_photo_to_ebay_download": single_photo_taps,
         "taps_closet_to_ebay_zip": closet_taps}))


# -- refused uploads -------------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's, as the app reads the header
def test_a_refused_upload_says_why_stores_nothing_and_the_page_keeps_working(browser_page, app_url, studio,
                                                                             tmp_path):
    page = browser_page
    seller = Seller(page, "phone" if page.viewport_size == PHONE else "desktop")
    originals = studio.settings.files_dir / "originals"
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb, optimize=True)  # 100 megapixels, a few kB on disk
    assert bomb.stat().st_size < 100_000
    open_app(page, app_url)
    for path, key_phrase, name in [
        (text, "JPEG, PNG, WebP or HEIC", "10-refused-text"),
        (bomb, "(100.0 megapixels); the limit is 50 megapixels", "11-refused-bomb"),
    ]:
        with pytest.raises(InputError) as refusal:  # what the API says for this file
            ingest_file(path)
        assert key_phrase in str(refusal.value)
        seller.add_photos(path)
        message = page.locator("[data-testid='toast-text']").filter(has_text=f"{path.name}: {refusal.value}")
        expect(message).to_be_visible()
        expect(message).to_have_count(1)
        expect(page.locator("[data-testid='toast-body'].error")).to_have_count(0)
        expect(page.get_by_text("No photo could be used; see the messages.")).to_be_visible()
        seller.shot(name)
        assert studio.database.db["garments"].count == 0
        assert not originals.exists() or not [f for f in originals.rglob("*") if f.is_file()]

    # the page still works: a good photo goes through
    photo = tmp_path / "navy tee.jpg"
    garment_photo()[0].save(photo, quality=92)
    seller.add_photos(photo)
    expect(page.locator("#closet button.thumbnail-item")).to_have_count(1)
    assert studio.list_garments()[0]["original_filename"] == "navy tee.jpg"
    seller.shot("12-good-upload-after-refusals")

    # one more refusal leaves the garment being checked open, with its listing
    title = page.locator("#listing-title textarea, #listing-title input").first
    expect(title).to_have_value(studio.list_garments()[0]["title"])
    seller.add_photos(text)
    expect(page.get_by_text("No photo could be used; see the messages.")).to_be_visible()
    expect(title).to_be_visible()
    expect(title).to_have_value(studio.list_garments()[0]["title"])
    expect(page.locator("#closet button.thumbnail-item")).to_have_count(1)
    seller.shot("13-refusal-keeps-the-garment-open")


# -- an on-model photo with a multi-reference editing family ----------------------------------------


@pytest.fixture(params=["flux2-klein", "qwen-edit"])
def edit_studio_url(request, settings, tiny_flux2_klein_folder, tiny_qwen_edit_folder, monkeypatch) -> Iterator[tuple]:
    """A studio whose on-model photos come from a tiny editing pipeline (each family in turn), and its page."""
    import dataclasses

    from pipeline.diffusion import forget_diffusion_backends
    from pipeline.studio import Studio
    from tiny_edit_models import qwen_vae_reference_area

    folder = {"flux2-klein": tiny_flux2_klein_folder, "qwen-edit": tiny_qwen_edit_folder}[request.param]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forget_diffusion_backends()
    studio = Studio.open(dataclasses.replace(settings, diffusion_family=request.param, base_model=str(folder),
                                             diffusion_device="cpu"))
    try:
        with qwen_vae_reference_area():  # Qwen VAE-encodes each reference at 1 MP: seconds each on a CPU
            for url in serve(studio):
                yield studio, url
    finally:
        studio.close()
        forget_diffusion_backends()


@pytest.mark.timeout(600)
def test_a_persona_photo_from_the_page_with_an_editing_family(browser_page, edit_studio_url, tmp_path):
    studio, url = edit_studio_url
    page = browser_page
    seller = Seller(page, "phone" if page.viewport_size == PHONE else "desktop")
    open_app(page, url)
    seller.add_photos(photos(tmp_path)[0])
    expect(page.locator("#cutout img")).to_be_visible()
    seller.tap(page.get_by_label("Sienna", exact=True))  # a persona, by her plain name, among the looks
    expect(page.get_by_text("Sienna's photo is made with your first photo of Sienna")).to_be_visible()
    expect(page.get_by_text("Prompt tuning (on-model photos)")).to_be_visible()  # for a look worn by a model
    seller.tap(page.get_by_role("button", name="Make photos", exact=True))
    expect(page.locator("#results button.thumbnail-item")).to_have_count(1, timeout=300_000)
    page.get_by_label("Marcus", exact=True).click()  # another persona, then back: her photo is shown now
    page.get_by_label("Sienna", exact=True).click()
    expect(page.get_by_text("Made once from Sienna's card, used for every garment")).to_be_visible()
    expect(page.locator("#persona-photo img")).to_be_visible()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Use my own model photo").click()
    own = tmp_path / "me.png"
    Image.new("RGB", (300, 600), (90, 90, 100)).save(own)
    chooser.value.set_files(str(own))
    expect(page.get_by_text("Your own photo, used for every garment")).to_be_visible()
    assert not DEVELOPER_WORDS.search(page.locator("body").inner_text())
    seller.no_wider_than_the_screen()
    family = studio.diffusion_models().family
    seller.shot(f"13-persona-photo-{family}")
    (listed,) = studio.list_generations(limit=5)
    job = studio.get_generation(listed["id"])
    assert job["status"] == "completed" and job["model_ids"]["family"] == family
    assert job["target_model_id"] == "mod_01" and job["outputs"][0]["is_ai_generated"] == 1
    assert studio.persona_photo("mod_01")["source"] == "user"  # the seller's own, private to them
