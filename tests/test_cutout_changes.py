"""`benchmarks/cutout_changes.py`: the studio's masks of a folder saved, and what changed between two saves
reported and drawn, on photos the test draws."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.test_cutout import iou
from tests.test_garment_net import HEIGHT, WIDTH, tee_on_floor

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/cutout_changes.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_saved_masks_are_the_studios_and_a_change_is_reported_and_drawn(tmp_path):
    photo, truth = tee_on_floor()
    for name in ("a.png", "b.png"):
        (tmp_path / "photos" / "t-shirt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(tmp_path / "photos" / "t-shirt" / name)
    saved = run("save", str(tmp_path / "photos"), str(tmp_path / "before.npz"), "--workers", "1")
    assert saved.returncode == 0, saved.stderr
    data = np.load(tmp_path / "before.npz", allow_pickle=True)
    assert list(data["files"]) == ["t-shirt/a.png", "t-shirt/b.png"]
    assert data["masks"][0].shape == (HEIGHT, WIDTH) and iou(data["masks"][0], truth) > 0.95

    masks = [mask.copy() for mask in data["masks"]]
    masks[1][150:170, 100:130] = 0  # a piece taken out of the second photo's garment
    np.savez_compressed(tmp_path / "after.npz", masks=np.array(masks, dtype=object), folder=data["folder"],
                        files=data["files"])
    judged = tmp_path / "judged.tsv"
    judged.write_text("index\tfile\tverdict\tgroup\tnote\n1\tt-shirt/b.png\tpass\tok\tclean\n")
    compared = run("compare", str(tmp_path / "before.npz"), str(tmp_path / "after.npz"), str(tmp_path / "out"),
                   "--judged", str(judged))
    assert compared.returncode == 0, compared.stderr
    report = json.loads(compared.stdout)
    removed = int(np.count_nonzero(data["masks"][1][150:170, 100:130]))
    assert report["changed"] == 1 and removed > 0
    assert report["photos"] == [{"file": "t-shirt/b.png", "verdict": "pass", "added": 0, "removed": removed}]
    assert sorted(Path(sheet).name for sheet in report["sheets"]) == ["pieces_0.png", "whole_0.png"]
    with Image.open(tmp_path / "out" / "whole_0.png") as whole:
        assert whole.height >= 420


def test_a_file_that_holds_no_masks_is_one_clear_error(tmp_path):
    wrong = tmp_path / "category.npz"
    np.savez(wrong, images=np.zeros((1, 8, 8, 3), np.uint8))
    compared = run("compare", str(wrong), str(wrong), str(tmp_path / "out"))
    assert compared.returncode != 0
    assert "not a file of masks" in compared.stderr and "cutout_changes.py save" in compared.stderr
