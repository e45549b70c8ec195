"""The garment network (`pipeline.garment_net`): the committed weights run for real on photos the tests draw, and
the fused cut-out's step 7 settles its large, sure disagreements with the mask the way the colours allow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import cutout, fusion, garment_net
from pipeline.errors import BackendUnavailableError
from pipeline.garment_net import WEIGHTS_PATH, TrainedGarmentNet
from tests.test_cutout import PANTS, T_SHIRT, iou, paint, polygon_mask, wood_floor

WIDTH, HEIGHT = 240, 320  # the fused cut-out's working size
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_network(monkeypatch):
    monkeypatch.setattr(garment_net, "_loaded", None)


def tee_on_floor() -> tuple[np.ndarray, np.ndarray]:
    truth = polygon_mask(T_SHIRT, WIDTH, HEIGHT)
    return paint(wood_floor(WIDTH, HEIGHT), truth, (40, 60, 160)), truth


def as_map(region: np.ndarray, inside: float = 0.97, outside: float = 0.02) -> np.ndarray:
    return np.where(region > 0, inside, outside).astype(np.float32)


def test_the_committed_weights_load_and_are_small(fresh_network):
    assert WEIGHTS_PATH.is_file() and WEIGHTS_PATH.stat().st_size < 9_000_000
    assert garment_net.garment_net() is garment_net.garment_net()  # loaded once per process


def test_the_real_network_finds_a_garment_on_a_textured_floor():
    photo, truth = tee_on_floor()
    probability = TrainedGarmentNet.load().probability(photo)
    assert probability.shape == (HEIGHT, WIDTH) and probability.dtype == np.float32
    assert probability[truth > 0].mean() > 0.8 and probability[truth == 0].mean() < 0.1


def test_a_damaged_file_is_one_clear_error(tmp_path):
    damaged = tmp_path / "garment_net.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(BackendUnavailableError, match="cannot be read"):
        TrainedGarmentNet.load(damaged)
    with pytest.raises(BackendUnavailableError, match="missing"):
        TrainedGarmentNet.load(tmp_path / "nothing.safetensors")


def test_without_its_file_the_fused_cut_out_runs_as_before(tmp_path, monkeypatch, fresh_network):
    monkeypatch.setattr(garment_net, "WEIGHTS_PATH", tmp_path / "missing.safetensors")
    photo, truth = tee_on_floor()
    assert fusion.garment_probability_of(photo) is None
    assert iou(fusion.cut_out_fused(Image.fromarray(photo)), truth) >= 0.95


def test_a_sleeve_both_models_lost_comes_back():
    photo, truth = tee_on_floor()
    sleeve = (truth > 0) & (np.arange(WIDTH) > 0.67 * WIDTH)[None, :]
    mask = np.where(sleeve, 0, truth).astype(np.uint8)
    corrected = fusion._correct_with_garment_net(photo, mask, as_map(truth), as_map(mask), None)
    assert iou(corrected, truth) > 0.97


def test_a_floor_patch_kept_beside_the_hem_goes():
    photo, truth = tee_on_floor()
    patch = np.zeros_like(truth)
    patch[int(0.84 * HEIGHT):int(0.92 * HEIGHT), int(0.40 * WIDTH):int(0.60 * WIDTH)] = 255
    patch[truth > 0] = 0
    mask = np.maximum(truth, patch)
    corrected = fusion._correct_with_garment_net(photo, mask, as_map(truth), as_map(mask), None)
    assert not corrected[patch > 0].any()
    assert np.array_equal(corrected > 0, truth > 0)


def test_a_part_unlike_the_floor_is_kept_though_the_network_calls_it_background():
    """The network has never seen every garment: a sleeve that looks nothing like the floor stays."""
    photo, truth = tee_on_floor()
    sleeve = (truth > 0) & (np.arange(WIDTH) > 0.67 * WIDTH)[None, :]
    corrected = fusion._correct_with_garment_net(photo, truth, as_map(truth & ~sleeve), as_map(truth), None)
    assert np.array_equal(corrected > 0, truth > 0)


def test_a_floor_wedge_the_network_calls_garment_stays_out():
    photo, truth = tee_on_floor()
    wedge = np.zeros_like(truth)
    wedge[int(0.47 * HEIGHT):int(0.60 * HEIGHT), int(0.58 * WIDTH):int(0.66 * WIDTH) + 1] = 255
    wedge[truth > 0] = 0  # the floor beside the body, under the sleeve
    photo[wedge > 0] = wood_floor(WIDTH, HEIGHT)[wedge > 0]
    corrected = fusion._correct_with_garment_net(photo, truth, as_map(np.maximum(truth, wedge)), as_map(truth),
                                                 None)
    assert not corrected[wedge > 0].any()


def test_on_a_hanger_what_the_hanger_steps_removed_does_not_come_back():
    truth = polygon_mask(PANTS, WIDTH, HEIGHT)
    photo = paint(wood_floor(WIDTH, HEIGHT), truth, (40, 60, 160))
    clip = np.zeros_like(truth)
    clip[int(0.08 * HEIGHT):int(0.15 * HEIGHT), int(0.36 * WIDTH):int(0.46 * WIDTH)] = 255
    photo[clip > 0] = (20, 20, 20)
    seen = as_map(np.maximum(truth, clip))
    kept_out = fusion._correct_with_garment_net(photo, truth, seen, seen, clip > 0)
    assert not kept_out[clip > 0].any()
    # the same part on a garment that hung on nothing is a piece the mask lost, and comes in
    taken_in = fusion._correct_with_garment_net(photo, truth, seen, seen, None)
    assert taken_in[clip > 0].all()


def test_a_collar_the_hanger_steps_take_for_a_hook_comes_back_where_the_network_says_garment():
    truth = polygon_mask(T_SHIRT, WIDTH, HEIGHT)
    collar = np.zeros_like(truth)
    collar[int(0.08 * HEIGHT):int(0.19 * HEIGHT), int(0.46 * WIDTH):int(0.54 * WIDTH)] = 255  # a turtleneck's
    garment = np.maximum(truth, collar)
    photo = paint(wood_floor(WIDTH, HEIGHT), garment, (40, 60, 160))
    above_the_body = collar.copy()
    above_the_body[int(0.15 * HEIGHT):] = 0  # its base may merge with the neckline
    assert not cutout.remove_hanger(garment)[above_the_body > 0].any()  # the shape rule alone takes it for a hook
    sure = fusion.fuse_small(photo, as_map(garment), as_map(garment))
    # back, less a pixel or two of its outline that the classic model rounds
    assert np.count_nonzero(sure[above_the_body > 0]) > 0.6 * np.count_nonzero(above_the_body)
    # where the network sees background, as on a real hook, it stays out
    unsure = fusion.fuse_small(photo, as_map(garment), as_map(truth))
    assert not unsure[above_the_body > 0].any()
    # where it only leans to garment, the part's colour decides: the garment's comes back, a hook's grey does not
    leaning = as_map(truth)
    leaning[collar > 0] = 0.7
    assert np.count_nonzero(fusion.fuse_small(photo, as_map(garment), leaning)[above_the_body > 0]) > (
        0.6 * np.count_nonzero(above_the_body))
    grey_hook = photo.copy()
    grey_hook[above_the_body > 0] = (150, 150, 150)
    assert not fusion.fuse_small(grey_hook, as_map(garment), leaning)[above_the_body > 0].any()


def test_on_a_clip_hanger_what_the_network_only_leans_to_stays_out():
    """Clips in the garment's colour (black on black jeans) that the network half takes for the waistband: once
    the hanger's bar is found, only a part the network is sure of comes back."""
    truth = polygon_mask(PANTS, WIDTH, HEIGHT)
    top = int(np.flatnonzero(truth.any(axis=1))[0])
    columns = np.flatnonzero(truth[top])
    hanger = np.zeros_like(truth)
    hanger[top - 16:top - 9, columns[0] - 6:columns[-1] + 7] = 255  # the bar, overhanging the waistband
    for left in (columns[0] + 4, columns[-1] - 10):
        hanger[top - 9:top + 6, left:left + 7] = 255  # two clips
    middle = (columns[0] + columns[-1]) // 2
    hanger[top - 34:top - 16, middle - 1:middle + 2] = 255  # the hook
    with_hanger = np.maximum(truth, hanger)
    photo = paint(wood_floor(WIDTH, HEIGHT), with_hanger, (40, 60, 160))
    trimmed = cutout.remove_hanger(with_hanger)
    above = (hanger > 0) & (truth == 0)
    assert not trimmed[above].any()
    leaning = as_map(truth)
    leaning[above] = 0.7
    assert np.array_equal(fusion._keep_garment_taken_for_a_hook(photo, with_hanger, trimmed, leaning), trimmed)
    sure = as_map(with_hanger)
    assert fusion._keep_garment_taken_for_a_hook(photo, with_hanger, trimmed, sure)[above].all()


def test_the_training_script_writes_weights_the_studio_loads(tmp_path):
    side = 320
    images = np.zeros((4, side, side, 3), np.uint8)
    masks = np.zeros((4, side, side), np.uint8)
    for index in range(4):
        photo, truth = tee_on_floor()
        images[index, :HEIGHT, :WIDTH] = photo
        masks[index, :HEIGHT, :WIDTH] = truth
    data = tmp_path / "train.npz"
    np.savez(data, images=images, masks=masks, sizes=np.array([(HEIGHT, WIDTH)] * 4),
             files=np.array([f"t-shirt/{index}.jpg" for index in range(4)]))
    out = tmp_path / "garment_net.safetensors"
    run = subprocess.run([sys.executable, "scripts/train_garment_net.py", str(data), "--out", str(out),
                          "--epochs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert '"epoch": 0' in run.stdout
    network = TrainedGarmentNet.load(out)
    assert network.probability(images[0, :HEIGHT, :WIDTH]).shape == (HEIGHT, WIDTH)


def test_on_a_plain_studio_backdrop_the_network_is_not_asked():
    """Product shots: the classic model is exact on a seamless backdrop, and the network (trained on floors and
    beds) would take a white hem on white for the backdrop, or the backdrop for garment."""
    truth = polygon_mask(T_SHIRT, WIDTH, HEIGHT)
    studio = (247 + np.random.default_rng(1).normal(0, 1, (HEIGHT, WIDTH, 3))).clip(0, 255).astype(np.uint8)
    photo = paint(studio, truth, (40, 60, 160))
    backdrop = np.zeros_like(truth)
    backdrop[int(0.84 * HEIGHT):, :] = 255  # a large piece of backdrop under the hem, "garment" to the network
    wrong = as_map(np.maximum(truth, backdrop))
    assert fusion._correct_with_garment_net(photo, truth, wrong, as_map(truth), None)[backdrop > 0].all()
    assert fusion._plain_backdrop(photo) and not fusion._plain_backdrop(tee_on_floor()[0])
    network = as_map(truth)
    assert np.array_equal(fusion.fuse_small(photo, network, wrong), fusion.fuse_small(photo, network))
    assert fusion.garment_probability_of(photo) is None
    tee = tee_on_floor()[0]
    other = TrainedGarmentNet.load(WEIGHTS_PATH)  # weights to try instead of the committed ones
    assert np.array_equal(fusion.garment_probability_of(tee, other), fusion.garment_probability_of(tee))


@pytest.mark.parametrize("flag", [[], ["--with-garment-net"]])
def test_the_data_script_stores_each_photo_with_the_studios_mask(tmp_path, flag):
    """The labels of the first round (no network) and of a second one (the studio's cut-out, step 7 and all)."""
    photo, truth = tee_on_floor()
    (tmp_path / "photos" / "t-shirt").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "photos" / "t-shirt" / "tee.png")
    out = tmp_path / "train.npz"
    run = subprocess.run([sys.executable, "scripts/garment_net_data.py", str(tmp_path / "photos"), str(out),
                          "--workers", "1", *flag], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data = np.load(out)
    assert data["images"].shape == (1, 320, 320, 3) and list(data["files"]) == ["t-shirt/tee.png"]
    height, width = data["sizes"][0]
    assert (height, width) == (HEIGHT, WIDTH) and not data["masks"][0][HEIGHT:].any()
    assert iou(data["masks"][0][:HEIGHT, :WIDTH], truth) > 0.95


def test_the_training_script_names_the_right_data_when_given_the_wrong_file(tmp_path):
    wrong = tmp_path / "category.npz"
    np.savez(wrong, images=np.zeros((1, 32, 32, 3), np.uint8), labels=np.zeros(1, np.int64))
    run = subprocess.run([sys.executable, "scripts/train_garment_net.py", str(wrong), "--out",
                          str(tmp_path / "out.safetensors")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "masks, sizes" in run.stderr and "garment_net_data.py" in run.stderr
    assert not (tmp_path / "out.safetensors").exists()
