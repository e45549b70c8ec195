"""Whole-closet work through a real data directory: batch uploads, remembered marketplaces, closet jobs under the
plan's limits, marketplace exports, size checks, thumbnails and closet listings."""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pipeline import plans, presets
from pipeline.errors import InputError, NotFoundError
from pipeline.generation import plan_outputs, size_warnings
from pipeline.naming import garment_name, numbered
from pipeline.on_model import OnModelOptions
from pipeline.studio import Studio
from pipeline.thumbnails import THUMBNAIL_LONG_SIDE

from conftest import garment_photo


def small_photo(folder: Path, name: str, seed: int = 0, size=(300, 400)) -> Path:
    image, _ = garment_photo(size, seed=seed)
    path = folder / name
    image.save(path, quality=92)
    return path


def upload_closet(studio: Studio, folder: Path, count: int) -> list[dict]:
    paths = [small_photo(folder, f"tee-{index}.jpg", seed=index) for index in range(count)]
    return studio.upload_garments(paths)["garments"]


def most_at_once(jobs: list[dict]) -> int:
    """The most jobs that were pending or processing at one moment, from their stored times."""
    return max(sum(other["created_at"] <= job["created_at"] < other["completed_at"] for other in jobs)
               for job in jobs)


def ai_output_for(studio: Studio, garment_id: str, marketplace: str) -> dict:
    """A generated (AI) photo for the marketplace, stored as a finished on-model job stores it."""
    generation = studio.database.create_generation(garment_id, "mod_01", "diffusion", parameters={})
    studio.database.start_generation(generation["id"])
    preset = presets.MARKETPLACES[marketplace]
    buffer = io.BytesIO()
    Image.new("RGB", (preset.width, preset.height), (200, 180, 160)).save(buffer, "JPEG")
    url = studio.files.write("outputs", buffer.getvalue(), ".jpg")
    studio.database.complete_generation(generation["id"], [{
        "image_url": url, "file_bytes": len(buffer.getvalue()), "aspect_ratio": preset.aspect_ratio,
        "marketplace": marketplace, "width": preset.width, "height": preset.height, "is_ai_generated": 1}])
    return studio.database.list_outputs(generation["id"])[0]


# -- batch upload ---------------------------------------------------------------------------------------------


def test_upload_garments_keeps_order_and_a_refused_photo_does_not_stop_the_others(studio, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    paths = [small_photo(tmp_path, "first.jpg"), bad, small_photo(tmp_path, "third.jpg", seed=2)]
    result = studio.upload_garments(paths, filenames=["Blue tee.jpg", None, "Third.jpg"])
    assert [g["original_filename"] for g in result["garments"]] == ["Blue tee.jpg", "Third.jpg"]
    assert all(g["status"] == "segmented" for g in result["garments"])
    assert len(result["refused"]) == 1 and result["refused"][0]["filename"] == "notes.jpg"
    assert result["refused"][0]["error"]
    assert {g["id"] for g in studio.list_garments()} == {g["id"] for g in result["garments"]}
    with pytest.raises(InputError, match="one file name per photo"):
        studio.upload_garments(paths, filenames=["only one"])


# -- remembered marketplaces ----------------------------------------------------------------------------------


def test_remembered_marketplaces_are_checked_and_survive_a_restart(settings, tmp_path):
    studio = Studio.open(settings)
    try:
        assert studio.preferred_marketplaces() == ["ebay"]
        assert studio.set_preferred_marketplaces(["Depop", "ebay", "depop"]) == ["depop", "ebay"]
        with pytest.raises(InputError) as refused:
            studio.set_preferred_marketplaces(["ebay", "amazon"])
        assert all(key in str(refused.value) for key in presets.MARKETPLACES)
        garment = studio.upload_garment(small_photo(tmp_path, "tee.jpg"))
    finally:
        studio.close()
    reopened = Studio.open(settings)
    try:
        assert reopened.preferred_marketplaces() == ["depop", "ebay"]
        assert reopened.garment_thumbnail(garment["id"]).is_file()  # the start-up sweep keeps thumbnails
        assert reopened.set_preferred_marketplaces([]) == [] and reopened.preferred_marketplaces() == []
    finally:
        reopened.close()


# -- closet jobs ----------------------------------------------------------------------------------------------


def test_a_closet_of_five_on_the_free_plan_runs_two_at_a_time_and_completes(studio, tmp_path):
    garments = upload_closet(studio, tmp_path, 5)
    assert studio.plan().concurrent_jobs == 2
    seen = []
    result = studio.generate_closet(marketplaces=["ebay"], wait=True, progress=lambda done, total: seen.append(
        (done, total)))
    jobs = result["jobs"]
    assert result["skipped"] == []
    assert [job["garment_id"] for job in jobs] == [g["id"] for g in garments]  # oldest first
    assert all(job["status"] == "completed" for job in jobs), [job["error_message"] for job in jobs]
    assert all(job["outputs"][0]["marketplace"] == "ebay" for job in jobs)
    assert most_at_once(jobs) == 2
    assert seen[-1] == (5, 5) and all(total == 5 for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_the_daily_limit_mid_closet_skips_the_rest_with_the_reason(studio, tmp_path, monkeypatch):
    monkeypatch.setitem(plans.PLANS, "free", dataclasses.replace(plans.PLANS["free"], generations_per_day=3))
    garments = upload_closet(studio, tmp_path, 5)
    result = studio.generate_closet(aspect_ratios=["1:1"], wait=True)
    assert [job["garment_id"] for job in result["jobs"]] == [g["id"] for g in garments[:3]]
    assert all(job["status"] == "completed" for job in result["jobs"])
    assert [s["garment_id"] for s in result["skipped"]] == [g["id"] for g in garments[3:]]
    assert all("3 generations a day" in s["reason"] for s in result["skipped"])


def test_a_closet_of_chosen_garments_skips_those_without_a_cut_out(studio, tmp_path):
    ready = studio.upload_garment(small_photo(tmp_path, "ready.jpg"))
    raw = studio.upload_garment(small_photo(tmp_path, "raw.jpg", seed=1), segment=False)
    result = studio.generate_closet(aspect_ratios=["4:5"], garment_ids=[raw["id"], ready["id"]], wait=True)
    assert [job["garment_id"] for job in result["jobs"]] == [ready["id"]]
    assert result["skipped"][0]["garment_id"] == raw["id"]
    assert "no usable cut-out" in result["skipped"][0]["reason"]
    everything = studio.generate_closet(aspect_ratios=["4:5"], wait=True)  # the seller's cut-out garments
    assert [job["garment_id"] for job in everything["jobs"]] == [ready["id"]] and everything["skipped"] == []
    with pytest.raises(NotFoundError):
        studio.generate_closet(garment_ids=["someone-elses"])
    with pytest.raises(InputError, match="amazon"):
        studio.generate_closet(marketplaces=["amazon"])


# -- marketplace export ---------------------------------------------------------------------------------------


def test_the_ebay_export_has_a_folder_per_garment_real_photo_first_and_a_listing(studio, tmp_path):
    first = studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    second = studio.upload_garment(small_photo(tmp_path, "b.jpg", seed=1))
    generated = ai_output_for(studio, first["id"], "ebay")  # made before the real photo, still listed after it
    real = studio.generate(first["id"], marketplaces=["ebay"], aspect_ratios=["1:1"], wait=True)["outputs"]
    studio.generate(second["id"], marketplaces=["ebay", "depop"], wait=True)
    zip_path = studio.export_marketplace("eBay", folder=tmp_path)
    assert zip_path.parent == tmp_path
    assert first["title"] == second["title"] == "Navy T-Shirt"  # folders and files are named after the title
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == [
            "listing.csv", "navy-t-shirt-2/navy-t-shirt-2-ebay-1.jpg",
            "navy-t-shirt/navy-t-shirt-ebay-1.jpg", "navy-t-shirt/navy-t-shirt-ebay-2.jpg"]
        ebay_real = next(o for o in real if o["marketplace"] == "ebay")
        assert archive.read("navy-t-shirt/navy-t-shirt-ebay-1.jpg") == \
            studio.file_path(ebay_real["image_url"]).read_bytes()
        assert archive.read("navy-t-shirt/navy-t-shirt-ebay-2.jpg") == \
            studio.file_path(generated["image_url"]).read_bytes()
        rows = list(csv.reader(io.StringIO(archive.read("listing.csv").decode())))
    assert rows == [
        ["garment_id", "name", "title", "category", "garment_type", "color", "color_hex", "secondary_color",
         "pattern", "files"],
        [first["id"], "navy-t-shirt", "Navy T-Shirt", "top", "t-shirt", "navy", first["detected_color_hex"], "",
         "solid", "navy-t-shirt-ebay-1.jpg;navy-t-shirt-ebay-2.jpg"],
        [second["id"], "navy-t-shirt-2", "Navy T-Shirt", "top", "t-shirt", "navy", second["detected_color_hex"], "",
         "solid", "navy-t-shirt-2-ebay-1.jpg"]]
    square = next(o for o in real if o["marketplace"] is None)
    assert studio.get_output(square["id"])["download_count"] == 0  # not made for eBay, not exported
    assert studio.get_output(ebay_real["id"])["download_count"] == 1
    assert studio.get_output(generated["id"])["download_count"] == 1


def test_the_export_keeps_to_the_marketplace_photo_limit_and_to_starred_photos(studio, tmp_path, monkeypatch):
    monkeypatch.setitem(presets.MARKETPLACES, "depop", dataclasses.replace(presets.MARKETPLACES["depop"],
                                                                           max_photos=2))
    garment = studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    outputs = [studio.generate(garment["id"], marketplaces=["depop"], background=background, wait=True)["outputs"][0]
               for background in ("white", "light grey", "cream")]
    with zipfile.ZipFile(studio.export_marketplace("depop", garment_ids=[garment["id"]], folder=tmp_path)) as zf:
        assert sorted(zf.namelist()) == ["listing.csv", "navy-t-shirt/navy-t-shirt-depop-1.jpg",
                                         "navy-t-shirt/navy-t-shirt-depop-2.jpg"]
    studio.set_favorite(outputs[2]["id"], True)
    with zipfile.ZipFile(studio.export_marketplace("depop", favorites_only=True, folder=tmp_path)) as zf:
        assert zf.read("navy-t-shirt/navy-t-shirt-depop-1.jpg") == studio.file_path(outputs[2]["image_url"]).read_bytes()
        assert len(zf.namelist()) == 2


def test_photos_made_twice_go_in_the_export_once_and_a_corrected_category_names_the_type(studio, tmp_path):
    """Making the same photos again (same garment, shape and background) gives identical files: the listing
    holds each image once. A seller's category makes the type seen meaningless; the sheet then says what the
    title says ("jacket")."""
    garment = studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    first = studio.generate(garment["id"], marketplaces=["ebay"], wait=True)["outputs"]
    again = studio.generate(garment["id"], marketplaces=["ebay"], wait=True)["outputs"]
    grey = studio.generate(garment["id"], marketplaces=["ebay"], background="light grey", wait=True)["outputs"]
    assert studio.file_path(first[0]["image_url"]).read_bytes() == studio.file_path(again[0]["image_url"]).read_bytes()
    studio.update_garment(garment["id"], category="outerwear")
    with zipfile.ZipFile(studio.export_marketplace("ebay", folder=tmp_path)) as archive:
        assert sorted(archive.namelist()) == ["listing.csv", "navy-jacket/navy-jacket-ebay-1.jpg",
                                              "navy-jacket/navy-jacket-ebay-2.jpg"]
        assert archive.read("navy-jacket/navy-jacket-ebay-2.jpg") == \
            studio.file_path(grey[0]["image_url"]).read_bytes()
        rows = list(csv.DictReader(io.StringIO(archive.read("listing.csv").decode())))
    assert [(row["title"], row["category"], row["garment_type"]) for row in rows] == [
        ("Navy Jacket", "outerwear", "jacket")]
    assert studio.get_output(again[0]["id"])["download_count"] == 0  # not in the zip


def test_an_export_without_photos_for_the_marketplace_says_what_to_do(studio, tmp_path):
    garment = studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    studio.generate(garment["id"], marketplaces=["ebay"], wait=True)
    with pytest.raises(InputError, match="Make photos for Depop first"):
        studio.export_marketplace("depop")
    with pytest.raises(InputError, match="poshmark"):
        studio.export_marketplace("amazon")


def test_garment_names_are_short_ascii_slugs_made_unique_in_an_export():
    assert garment_name({"title": "Navy & Cream Striped T-Shirt", "detected_color": "navy"}) == \
        "navy-cream-striped-t-shirt"
    assert garment_name({"detected_color": "navy", "category": "top"}) == "navy-top"
    assert garment_name({"detected_color": "heather grey", "category": "dress"}) == "heather-grey-dress"
    assert garment_name({"detected_color": None, "category": None}) == "garment"
    assert garment_name({"detected_color": "Crème brûlée", "category": "outerwear"}) == "creme-brulee-outerwear"
    long_name = garment_name({"detected_color": "very " * 20, "category": "top"})
    assert len(long_name) <= 40 and not long_name.endswith("-")
    assert numbered(["navy-top", "red-dress", "navy-top", "navy-top"]) == [
        "navy-top", "red-dress", "navy-top-2", "navy-top-3"]


# -- honest sizes ---------------------------------------------------------------------------------------------


def test_a_small_photo_is_reported_soft_and_its_enlarged_output_is_marked(studio, tmp_path):
    garment = studio.upload_garment(small_photo(tmp_path, "small.jpg", size=(300, 400)))
    checks = {check["size"]: check for check in studio.size_check(garment["id"], ["ebay"], ["1:1"])}
    assert set(checks) == {"ebay", "1:1"}
    ebay = checks["ebay"]
    assert (ebay["width"], ebay["height"]) == (1600, 1600)
    assert 215 <= ebay["garment_px"] <= 245  # the T-shirt's long side, its 228 px sleeve span, in a 300 x 400 photo
    assert ebay["needed_px"] == pytest.approx(1312, abs=2)  # 82 % of the 1600 px frame
    assert ebay["enlargement"] == pytest.approx(ebay["needed_px"] / ebay["garment_px"], abs=0.01)
    assert ebay["message"] == (f"The garment is {ebay['garment_px']} px across in the photo: it will look soft at "
                               "1600 px. Upload the full-size photo, or take it closer.")
    job = studio.generate(garment["id"], marketplaces=["ebay"], wait=True)
    assert job["outputs"][0]["enlargement"] == pytest.approx(ebay["enlargement"], abs=0.01)


def test_a_large_garment_needs_no_warning_and_is_not_marked_enlarged(studio, tmp_path):
    _, mask = garment_photo((1400, 2000))  # the T-shirt is 1080 px tall, 1064 px across its sleeves
    assert size_warnings(mask, plan_outputs(["1:1", "4:5"], ["ebay"])) == []
    _, small_mask = garment_photo((300, 400))
    assert [w["size"] for w in size_warnings(small_mask, plan_outputs(["1:1"], ["ebay"]))] == ["1:1", "ebay"]
    garment = studio.upload_garment(small_photo(tmp_path, "a.jpg", size=(600, 800)))
    square = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)["outputs"][0]
    # 800 px is the smallest ratio output: 82 % of it over the T-shirt's 456 px sleeve span
    assert square["enlargement"] == pytest.approx(1.44, abs=0.02)
    with pytest.raises(InputError, match="cut-out"):
        studio.size_check(studio.upload_garment(small_photo(tmp_path, "b.jpg"), segment=False)["id"], ["ebay"])


# -- thumbnails -----------------------------------------------------------------------------------------------


def test_the_thumbnail_is_stored_with_the_cut_out_counted_and_deleted_with_the_garment(studio, tmp_path):
    garment = studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    assert garment["thumbnail_url"].startswith("thumbnails/")
    path = studio.garment_thumbnail(garment["id"])
    assert path == studio.file_path(garment["thumbnail_url"]) and path in studio.stored_files(garment["id"])
    with Image.open(path) as thumbnail:
        assert thumbnail.format == "JPEG" and max(thumbnail.size) == THUMBNAIL_LONG_SIDE
        assert min(thumbnail.convert("RGB").getpixel((2, 2))) >= 245  # the cut-out on white, not the floor
    assert garment["thumbnail_bytes"] == path.stat().st_size
    assert studio.database.storage_bytes(studio.owner_id) == (
        garment["original_bytes"] + garment["mask_bytes"] + garment["thumbnail_bytes"])
    recut = studio.segment_garment(garment["id"])
    assert recut["thumbnail_url"] != garment["thumbnail_url"] and not path.exists()  # replaced, not left behind
    new_path = studio.file_path(recut["thumbnail_url"])
    studio.delete_garment(garment["id"])
    assert not new_path.exists()
    assert studio.database.storage_bytes(studio.owner_id) == 0


def test_older_garments_and_photos_without_a_cut_out_get_a_thumbnail_on_request(studio, tmp_path):
    raw = studio.upload_garment(small_photo(tmp_path, "raw.jpg"), segment=False)
    assert raw["thumbnail_url"] is None
    with Image.open(studio.garment_thumbnail(raw["id"])) as thumbnail:
        assert thumbnail.size == (240, 320)  # the whole 3:4 photo
    older = studio.upload_garment(small_photo(tmp_path, "older.jpg", seed=1))
    studio.files.delete(older["thumbnail_url"])
    studio.database.update_garment(older["id"], thumbnail_url=None, thumbnail_bytes=None)
    with Image.open(studio.garment_thumbnail(older["id"])) as thumbnail:
        assert thumbnail.size == (320, 320)  # the cut-out on white, squared
    assert studio.get_garment(older["id"])["thumbnail_bytes"] > 0


# -- closet listings ------------------------------------------------------------------------------------------


def test_list_garments_filters_by_category_and_date_and_keeps_paging(studio, tmp_path):
    garments = upload_closet(studio, tmp_path, 3)
    studio.update_garment(garments[1]["id"], category="dress")
    assert [g["id"] for g in studio.list_garments(category="dress")] == [garments[1]["id"]]
    assert [g["id"] for g in studio.list_garments(category="Top")] == [garments[2]["id"], garments[0]["id"]]
    assert [g["id"] for g in studio.list_garments(limit=1, offset=1, category="top")] == [garments[0]["id"]]
    assert len(studio.list_garments(since="2000-01-01")) == 3
    assert studio.list_garments(since="2999-01-01") == []
    assert [g["id"] for g in studio.list_garments(since=garments[1]["created_at"])] == [
        garments[2]["id"], garments[1]["id"]]
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        studio.list_garments(since="last week")
    with pytest.raises(InputError, match="outerwear"):
        studio.list_garments(category="shoes")


def test_favourites_name_the_garment_they_show(studio, tmp_path):
    garment = studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    output = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)["outputs"][0]
    studio.set_favorite(output["id"], True)
    assert [(f["id"], f["garment_id"]) for f in studio.list_favorites(10)] == [(output["id"], garment["id"])]


def test_on_model_photos_resized_up_from_the_diffusion_size_are_marked(diffusion_studio, tmp_path):
    garment = diffusion_studio.upload_garment(small_photo(tmp_path, "a.jpg"))
    job = diffusion_studio.generate(garment["id"], "mod_01", aspect_ratios=["1:1"], marketplaces=["depop"],
                                    wait=True, options=OnModelOptions(width=256, height=256, steps=2))
    assert job["status"] == "completed", job["error_message"]
    enlargement = {o["marketplace"] or o["aspect_ratio"]: o["enlargement"] for o in job["outputs"]}
    assert enlargement["1:1"] == 1.0  # a plain shape keeps the generated pixels as they are
    assert enlargement["depop"] == pytest.approx(1280 / (256 * 4 / 5), abs=0.01)  # 1280 px from a 205 px window
