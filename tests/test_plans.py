"""Plan limits enforced before work starts, with messages that say the limit and when it resets; deletion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from conftest import files_under
from pipeline import plans
from pipeline.errors import NotFoundError, QuotaExceededError
from pipeline.on_model import OnModelOptions
from pipeline.plans import PLANS, Plan


@pytest.fixture
def tight_free_plan(monkeypatch):
    tight = Plan("free", generations_per_day=2, max_batch_size=1, max_long_side=1600, concurrent_jobs=5,
                 storage_mb=1)
    monkeypatch.setitem(PLANS, "free", tight)
    return tight


def test_the_daily_generation_quota(studio, photo_path, tight_free_plan):
    garment = studio.upload_garment(photo_path)
    for _ in range(2):
        studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    with pytest.raises(QuotaExceededError, match=r"allows 2 generations a day and you have used 2; it resets at "
                                                  r"00:00 UTC, in \d+ (h \d+ )?min\. The pro plan allows more\."):
        studio.generate(garment["id"], aspect_ratios=["1:1"])
    usage = studio.usage()
    assert usage["generations_today"] == 2 and usage["plan"]["generations_per_day"] == 2
    assert len(studio.list_generations(garment["id"])) == 2  # the refused one was not stored


def test_marketplace_sizes_above_the_plan(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    with pytest.raises(QuotaExceededError, match="etsy photos are 2000x2500; your free plan allows 1600 px"):
        studio.generate(garment["id"], marketplaces=["etsy"])
    studio.database.update_user(studio.owner_id, subscription_plan="pro")
    assert studio.generate(garment["id"], marketplaces=["etsy"], wait=True)["status"] == "completed"


def test_batch_size_and_concurrent_jobs(diffusion_studio, photo_path, monkeypatch):
    monkeypatch.setitem(PLANS, "free", dataclasses.replace(PLANS["free"], concurrent_jobs=1))
    garment = diffusion_studio.upload_garment(photo_path)
    with pytest.raises(QuotaExceededError, match="up to 2 images per job, not 3"):
        diffusion_studio.generate(garment["id"], "mod_01", options=OnModelOptions(batch_size=3))
    diffusion_studio.database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})  # queued
    with pytest.raises(QuotaExceededError, match="runs 1 jobs at once and 1 are queued or running"):
        diffusion_studio.generate(garment["id"])


def test_the_storage_quota_refuses_uploads_and_stores_nothing(studio, photo_path, tight_free_plan, settings):
    studio.upload_garment(photo_path)
    big = photo_path.with_name("big.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 700, 3), dtype=np.uint8)).save(big)
    before = files_under(settings.files_dir)
    with pytest.raises(QuotaExceededError, match="stores up to 1 MB"):
        studio.upload_garment(big)
    assert files_under(settings.files_dir) == before and len(studio.list_garments()) == 1


def test_deleting_a_garment_leaves_nothing(studio, photo_path, settings):
    kept = studio.upload_garment(photo_path)
    garment = studio.upload_garment(photo_path)
    job = studio.generate(garment["id"], aspect_ratios=["1:1", "4:5"], wait=True)
    studio.generate(kept["id"], aspect_ratios=["1:1"], wait=True)
    kept_files = set(studio.database.owner_files(studio.owner_id)) - {
        garment["original_image_url"], garment["mask_image_url"], garment["thumbnail_url"],
        *(o["image_url"] for o in job["outputs"])}
    assert studio.delete_garment(garment["id"]) == {"deleted": garment["id"]}
    for call in (lambda: studio.get_garment(garment["id"]), lambda: studio.get_generation(job["id"]),
                 lambda: studio.download(job["outputs"][0]["id"])):
        with pytest.raises(NotFoundError):
            call()
    on_disk = {path.relative_to(settings.files_dir).as_posix() for path in files_under(settings.files_dir)}
    assert on_disk == kept_files
    assert studio.database.db.execute("SELECT count(*) FROM output_images").fetchone()[0] == 1


def test_deleting_the_account_leaves_nothing(studio, photo_path, settings):
    garment = studio.upload_garment(photo_path)
    studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    old_owner = studio.owner_id
    assert studio.delete_account() == {"deleted": old_owner}
    assert files_under(settings.files_dir) == []
    db = studio.database.db
    assert [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("garments", "generations", "output_images")] == [0, 0, 0]
    assert db.execute("SELECT count(*) FROM users WHERE id = ?", [old_owner]).fetchone()[0] == 0
    assert studio.list_garments() == [] and studio.owner_id != old_owner


def test_plans_are_the_seeds():
    assert set(PLANS) == {"free", "pro", "enterprise"}
    assert PLANS["free"].generations_per_day < PLANS["pro"].generations_per_day \
        < PLANS["enterprise"].generations_per_day
    assert plans.upgrade_hint(PLANS["enterprise"]) == ""


def test_storage_used_is_the_bytes_on_disk(studio, photo_path, settings):
    garment = studio.upload_garment(photo_path)
    studio.refine_garment(garment["id"], [[300, 400, 1]])  # replaces the cut-out file
    studio.generate(garment["id"], aspect_ratios=["1:1", "4:5"], wait=True)
    on_disk = sum(path.stat().st_size for path in files_under(settings.files_dir))
    assert studio.database.storage_bytes(studio.owner_id) == on_disk
    assert studio.usage()["storage_mb"] == round(on_disk / 1024 / 1024, 1)
