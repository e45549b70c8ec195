"""SAM backend with a tiny random checkpoint saved to disk and loaded through the production loader, offline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline import sam
from pipeline.errors import BackendUnavailableError, InputError
from tiny_models import build_not_a_model, build_tiny_sam

FAST_FAILURE_S = 5.0


pytestmark = pytest.mark.usefixtures("offline_sam")


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture
def segmenter(tiny_sam: Path) -> sam.SamSegmenter:
    return sam.load_sam_segmenter(str(tiny_sam), device="cpu")


def skirt_photo(width: int = 240, height: int = 320, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A red A-line skirt on a grey, slightly noisy floor, and its true mask (bool)."""
    rng = np.random.default_rng(seed)
    floor = 190 + rng.normal(0, 5, (height, width, 3))
    truth = Image.new("L", (width, height), 0)
    outline = [(0.38, 0.15), (0.62, 0.15), (0.80, 0.85), (0.20, 0.85)]
    ImageDraw.Draw(truth).polygon([(x * width, y * height) for x, y in outline], fill=255)
    mask = np.asarray(truth) > 0
    cloth = np.array([170, 30, 40]) + rng.normal(0, 4, (height, width, 3))
    pixels = np.where(mask[..., None], cloth, floor).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels), mask


def first_pixel(mask: np.ndarray, value: int, region: np.ndarray) -> tuple[int, int]:
    """(x, y) of a pixel inside `region` where the mask has `value`, well away from the image border."""
    ys, xs = np.nonzero((mask == value) & region)
    inner = (xs > 10) & (ys > 10) & (xs < mask.shape[1] - 10) & (ys < mask.shape[0] - 10)
    assert inner.any(), "test image has no such pixel"
    index = int(np.flatnonzero(inner)[len(np.flatnonzero(inner)) // 2])
    return int(xs[index]), int(ys[index])


# -------------------------------------------------------------------------------------------- model id, device


def test_model_id_explicit_then_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sam.resolve_sam_model() == "facebook/sam-vit-base" == sam.DEFAULT_SAM_MODEL
    monkeypatch.setenv("STUDIO_SAM_MODEL", "facebook/sam-vit-huge")
    assert sam.resolve_sam_model() == "facebook/sam-vit-huge"
    assert sam.resolve_sam_model("/models/sam") == "/models/sam"
    assert sam.resolve_sam_model("  ") == "facebook/sam-vit-huge"


def test_device_prefers_cuda_half_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sam.choose_device() == ("cuda", torch.float16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert sam.choose_device() == ("mps", torch.float32)
    assert sam.choose_device("cpu") == ("cpu", torch.float32)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert sam.choose_device("auto") == ("cpu", torch.float32)


def test_device_asked_for_but_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="'cuda' was asked for"):
        sam.choose_device("cuda")
    with pytest.raises(BackendUnavailableError, match="MPS is not available"):
        sam.choose_device("mps")
    with pytest.raises(InputError, match="Unknown device"):
        sam.choose_device("tpu")


# -------------------------------------------------------------------------------------------- loader


def test_loads_a_local_checkpoint_folder_offline(segmenter: sam.SamSegmenter, tiny_sam: Path) -> None:
    assert segmenter.name == "sam"
    assert segmenter.model_id == str(tiny_sam)
    assert (segmenter.device, segmenter.dtype) == ("cpu", torch.float32)
    assert segmenter.model.config.model_type == "sam"
    assert not segmenter.model.training


def test_one_instance_per_model_and_device(tiny_sam: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    first = sam.load_sam_segmenter(str(tiny_sam))
    assert sam.load_sam_segmenter(str(tiny_sam), device="cpu") is first
    monkeypatch.setenv("STUDIO_SAM_MODEL", str(tiny_sam))
    assert sam.load_sam_segmenter() is first


def test_concurrent_first_loads_build_one_instance(tiny_sam: Path) -> None:
    results: list[sam.SamSegmenter] = []
    threads = [threading.Thread(target=lambda: results.append(sam.load_sam_segmenter(str(tiny_sam), "cpu")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(result is results[0] for result in results)


def test_folder_that_is_not_a_sam_checkpoint(tmp_path: Path) -> None:
    folder = build_not_a_model(tmp_path / "bert")
    with pytest.raises(BackendUnavailableError, match="is not a SAM checkpoint") as caught:
        sam.load_sam_segmenter(str(folder))
    assert "\n" not in str(caught.value)
    with pytest.raises(BackendUnavailableError, match="is not a SAM checkpoint"):
        sam.load_sam_segmenter(str(tmp_path))  # an empty folder


def test_sam_config_without_weights_is_a_clear_error(tmp_path: Path, tiny_sam: Path) -> None:
    broken = tmp_path / "no-weights"
    broken.mkdir()
    (broken / "config.json").write_bytes((tiny_sam / "config.json").read_bytes())
    with pytest.raises(BackendUnavailableError, match="cannot be loaded"):
        sam.load_sam_segmenter(str(broken))


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        sam.load_sam_segmenter(str(tmp_path / "nowhere" / "sam"))


def test_missing_hub_weights_offline_fail_fast_and_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = []
    real_load = sam._load_pretrained
    monkeypatch.setattr(sam, "_load_pretrained", lambda *a, **k: attempts.append(a) or real_load(*a, **k))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        sam.load_sam_segmenter("resell-studio-tests/no-such-sam")
    assert time.monotonic() - started < FAST_FAILURE_S
    message = str(caught.value)
    assert "'resell-studio-tests/no-such-sam' is not available offline (HF_HUB_OFFLINE is set)" in message
    assert "--sam-model" in message and "\n" not in message
    assert len(attempts) == 1

    with pytest.raises(BackendUnavailableError) as again:
        sam.load_sam_segmenter("resell-studio-tests/no-such-sam")
    assert str(again.value) == message
    assert len(attempts) == 1, "a remembered failure must not try to load again"


def test_unreachable_hub_fails_fast_without_downloading(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    downloads = []
    real_load = sam._load_pretrained
    monkeypatch.setattr(sam, "_load_pretrained",
                        lambda source, local_only: real_load(source, local_only) if local_only else downloads.append(1))

    def unreachable(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    with pytest.raises(BackendUnavailableError, match="the Hub cannot be reached"):
        sam.load_sam_segmenter("resell-studio-tests/no-such-sam")
    assert downloads == []


# -------------------------------------------------------------------------------------------- automatic prompt


def test_automatic_prompt_comes_from_the_classical_cutout() -> None:
    image, truth = skirt_photo()
    prompt = sam._auto_prompt_from_cutout(np.asarray(image))
    x0, y0, x1, y1 = prompt.box
    ys, xs = np.nonzero(truth)
    assert abs(x0 - xs.min()) < 12 and abs(x1 - xs.max()) < 12
    assert abs(y0 - ys.min()) < 12 and abs(y1 - ys.max()) < 12
    assert 1 <= len(prompt.positive) <= sam.AUTO_POSITIVE_POINTS
    assert all(truth[int(y), int(x)] for x, y in prompt.positive)
    assert prompt.classical is not None and sam._iou(prompt.classical, truth) > 0.9


def test_automatic_prompt_falls_back_to_a_centred_box_without_a_cutout() -> None:
    blank = np.full((100, 200, 3), 128, dtype=np.uint8)
    prompt = sam._auto_prompt_from_cutout(blank)
    assert prompt.classical is None
    assert prompt.box == pytest.approx((20, 10, 180, 90))
    assert prompt.positive == [(100, 50)]


def test_segment_returns_a_sam_mask_of_the_image_size(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    runs = segmenter.encoder_runs
    result = segmenter.segment(image)
    assert result.backend == "sam"
    assert segmenter.encoder_runs == runs + 1, "SAM's encoder must run: no silent classical fallback"
    assert result.mask.shape == (image.height, image.width) and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 255}


def test_segment_accepts_greyscale_and_alpha_images(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo(200, 150)
    for mode in ("L", "RGBA"):
        assert segmenter.segment(image.convert(mode)).mask.shape == (150, 200)


def test_candidates_are_ranked_by_predicted_iou_and_plausibility() -> None:
    truth = np.zeros((40, 40), dtype=bool)
    truth[10:30, 10:30] = True
    everything = np.ones_like(truth)
    speck = np.zeros_like(truth)
    speck[5, 5] = True
    prompt = sam._AutoPrompt(box=(10, 10, 30, 30), positive=[(20, 20)], classical=truth)
    candidates = [sam._Candidate(m.astype(np.float32), m, iou) for m, iou in
                  ((everything, 0.99), (speck, 0.95), (truth, 0.80))]
    assert max(candidates, key=lambda c: sam._auto_score(c, prompt)).mask is truth


# -------------------------------------------------------------------------------------------- refine


def test_positive_click_makes_that_place_garment(segmenter: sam.SamSegmenter) -> None:
    image, truth = skirt_photo()
    before = segmenter.segment(image, cache_key="skirt").mask
    x, y = first_pixel(before, 0, ~truth)
    after = segmenter.refine(image, [(x, y, 1)], cache_key="skirt").mask
    assert after.shape == before.shape
    assert after[y, x] == 255 and before[y, x] == 0


def test_negative_click_makes_that_place_background(segmenter: sam.SamSegmenter) -> None:
    image, truth = skirt_photo()
    before = segmenter.segment(image, cache_key="skirt").mask
    x, y = first_pixel(before, 255, np.ones_like(truth))
    assert segmenter.refine(image, [(x, y, 0)], cache_key="skirt").mask[y, x] == 0


def test_the_later_of_two_clicks_on_one_place_wins(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    x, y = 120, 160  # the middle of the skirt
    assert segmenter.refine(image, [(x, y, 0), (x, y, 1)], cache_key="skirt").mask[y, x] == 255
    assert segmenter.refine(image, [(x, y, 1), (x, y, 0)], cache_key="skirt").mask[y, x] == 0


def test_positive_and_negative_clicks_together(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    clicks = [(20.0, 20.0, 1), (120.0, 200.0, 0), (200.0, 300.0, 1)]
    mask = segmenter.refine(image, clicks, cache_key="skirt").mask
    for x, y, label in clicks:
        assert mask[int(y), int(x)] == (255 if label else 0)


def test_no_clicks_is_the_automatic_mask(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    automatic = segmenter.segment(image, cache_key="skirt").mask
    assert np.array_equal(segmenter.refine(image, [], cache_key="skirt").mask, automatic)


def test_bad_clicks_are_input_errors(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    with pytest.raises(InputError, match="outside"):
        segmenter.refine(image, [(500, 10, 1)])
    with pytest.raises(InputError, match="label"):
        segmenter.refine(image, [(10, 10, 2)])


def test_click_enforcement_adds_sam_region_and_removes_side_parts() -> None:
    mask = np.zeros((60, 60), dtype=bool)
    mask[10:40, 10:40] = True  # the garment
    mask[50:55, 50:55] = True  # a stray blob
    sam_sees = np.zeros_like(mask)
    sam_sees[42:58, 2:20] = True  # a part SAM found but did not choose
    candidates = [sam._Candidate(np.where(sam_sees, 5.0, -5.0).astype(np.float32), sam_sees, 0.5)]
    result = sam._enforce_clicks(mask, candidates, [(10.0, 50.0, 1), (52.0, 52.0, 0)])
    assert result[sam_sees].all(), "the SAM component around a positive click is added"
    assert not result[50:55, 50:55].any(), "a side part under a negative click is removed"
    assert result[10:40, 10:40].all()
    carved = sam._enforce_clicks(mask, candidates, [(25.0, 25.0, 0)])
    assert not carved[25, 25] and carved[12, 12], "a click on the main part only carves a disk out of it"


# -------------------------------------------------------------------------------------------- embedding cache


def test_encoder_runs_once_per_garment(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    start = segmenter.encoder_runs
    segmenter.segment(image, cache_key="garment-1")
    for step in range(6):
        segmenter.refine(image, [(100 + step, 150, 1), (10, 10, 0)], cache_key="garment-1")
    assert segmenter.encoder_runs == start + 1
    segmenter.refine(image, [(100, 150, 1)], cache_key="garment-2")
    assert segmenter.encoder_runs == start + 2
    segmenter.refine(image, [(100, 150, 1)], cache_key="garment-1")
    assert segmenter.encoder_runs == start + 2


def test_no_cache_key_means_no_caching(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    start = segmenter.encoder_runs
    segmenter.segment(image)
    segmenter.refine(image, [(100, 150, 1)])
    assert segmenter.encoder_runs == start + 2


def test_cache_is_a_bounded_lru(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo(96, 128)
    for index in range(sam.EMBEDDING_CACHE_SIZE + 1):
        segmenter.segment(image, cache_key=f"g{index}")
    start = segmenter.encoder_runs
    segmenter.segment(image, cache_key=f"g{sam.EMBEDDING_CACHE_SIZE}")
    assert segmenter.encoder_runs == start
    segmenter.segment(image, cache_key="g0")  # the oldest was evicted
    assert segmenter.encoder_runs == start + 1


def test_same_key_with_another_image_size_is_encoded_again(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    start = segmenter.encoder_runs
    segmenter.segment(image, cache_key="g")
    segmenter.segment(image.resize((120, 160)), cache_key="g")
    assert segmenter.encoder_runs == start + 2


def test_concurrent_clicks_on_one_garment_encode_once(segmenter: sam.SamSegmenter) -> None:
    image, _ = skirt_photo()
    start = segmenter.encoder_runs
    errors: list[BaseException] = []

    def click(step: int) -> None:
        try:
            mask = segmenter.refine(image, [(60 + 10 * step, 100, 1)], cache_key="shared").mask
            assert mask[100, 60 + 10 * step] == 255
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=click, args=(step,)) for step in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert segmenter.encoder_runs == start + 1
