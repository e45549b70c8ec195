"""The installed `resell-studio` command, run as a seller would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.presets import MARKETPLACES

COMMAND = Path(sys.executable).with_name("resell-studio")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("STUDIO_DATA_DIR", None)
    return subprocess.run([str(COMMAND), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(autouse=True)
def installed():
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} is not installed: run `make test`, which installs the package into .venv")


def test_segment_writes_masks_and_prints_json_lines(tmp_path, photo_path):
    second = tmp_path / "second.png"
    Image.open(photo_path).rotate(90, expand=True).save(second)
    result = run("segment", str(photo_path), str(second), "--out", str(tmp_path / "masks"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["image"]).name for line in lines] == ["navy tee.jpg", "second.png"]
    for line, size in zip(lines, [(600, 800), (800, 600)]):
        assert set(line) == {"image", "mask", "category", "category_confidence", "garment_type", "color", "hex",
                             "secondary_color", "pattern", "title", "backend", "seconds"}
        assert line["backend"] == "fused"
        with Image.open(line["mask"]) as mask:
            assert mask.mode == "L" and mask.size == size
    assert (tmp_path / "masks" / "navy tee.png").is_file()
    upright = lines[0]
    assert upright["color"] == "navy" and upright["pattern"] == "solid" and upright["secondary_color"] is None
    assert upright["title"] == f"Navy {upright['garment_type'].title()}"


def test_generate_writes_photos_and_stores_them(tmp_path, photo_path):
    result = run("generate", str(photo_path), "--model", "ghost_01", "--ratios", "1:1,4:5",
                 "--marketplace", "ebay", "--out", "photos", "--data-dir", "studio-data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    files = {o["marketplace"] or o["aspect_ratio"]: Path(tmp_path / o["file"]) for o in report["outputs"]}
    assert set(files) == {"1:1", "4:5", "ebay"}
    with Image.open(files["ebay"]) as image:
        assert image.size == (MARKETPLACES["ebay"].width, MARKETPLACES["ebay"].height)
    assert (tmp_path / "studio-data" / "studio.db").is_file()


@pytest.mark.parametrize("args, message", [
    (["segment", "missing.jpg", "--out", "masks"], "missing.jpg"),
    (["generate", "notes.jpg", "--out", "photos"], "JPEG, PNG, WebP or HEIC"),
    (["generate", "tee.png", "--model", "mod_01"], "Sienna"),
    (["generate", "tee.png", "--marketplace", "amazon"], "ebay"),
    (["segment", "tee.png", "--out", "masks", "--backend", "sam"], "SAM"),
])
def test_errors_are_one_actionable_line(tmp_path, photo_path, args, message):
    (tmp_path / "notes.jpg").write_text("not a photo")
    Image.open(photo_path).save(tmp_path / "tee.png")
    result = run(*args, "--data-dir", "d", cwd=tmp_path) if args[0] == "generate" else run(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_segment_with_a_local_sam_checkpoint(tmp_path, photo_path, tiny_sam_folder):
    result = run("segment", str(photo_path), "--backend", "sam", "--sam-model", str(tiny_sam_folder),
                 "--out", str(tmp_path / "masks"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["backend"] == "sam"
    with Image.open(line["mask"]) as mask:
        assert mask.mode == "L" and mask.size == (600, 800)


def test_generate_on_a_model_with_local_diffusion_checkpoints(tmp_path, photo_path, tiny_diffusion):
    models = tiny_diffusion.models
    result = run("generate", str(photo_path), "--model", "mod_02", "--backend", "diffusion", "--family", "sd15",
                 "--base-model", models.base_model, "--controlnet", models.controlnet,
                 "--ip-adapter", models.ip_adapter, "--ip-adapter-weight", models.ip_adapter_weight_name,
                 "--ip-adapter-subfolder", models.ip_adapter_subfolder, "--image-encoder", models.image_encoder,
                 "--image-encoder-subfolder", models.image_encoder_subfolder, "--device", "cpu", "--steps", "2", "--width", "256",
                 "--height", "256", "--seed", "3", "--ratios", "1:1", "--out", "photos", "--data-dir", "d",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "diffusion" and report["prompt"]
    (output,) = report["outputs"]
    assert output["seed"] == 3 and output["ai_generated"] and (tmp_path / output["file"]).is_file()


def test_a_backend_that_does_not_match_the_model_is_refused(tmp_path, photo_path):
    result = run("generate", str(photo_path), "--model", "ghost_01", "--backend", "diffusion", "--data-dir", "d",
                 cwd=tmp_path)
    assert result.returncode != 0 and "ghost backend" in result.stderr


def test_users_add_and_token(tmp_path):
    env_dir = ["--data-dir", str(tmp_path / "d")]
    added = subprocess.run([str(COMMAND), "users", "add", "ana@example.com", "--plan", "pro", "--password-stdin",
                            *env_dir], input="a long enough password\n", capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["subscription_plan"] == "pro" and "password" not in added.stdout
    token = run("users", "token", "ana@example.com", *env_dir, cwd=tmp_path)
    assert json.loads(token.stdout)["token"].startswith("rs_")
    missing = run("users", "token", "bo@example.com", *env_dir, cwd=tmp_path)
    assert missing.returncode != 0 and "No account for bo@example.com" in missing.stderr
