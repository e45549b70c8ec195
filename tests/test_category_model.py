"""The CLIP category backend, with a tiny random CLIP saved to a temporary folder (no downloads)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import category_model
from pipeline.attributes import CATEGORIES
from pipeline.category_model import (
    DEFAULT_CATEGORY_MODEL,
    HEURISTIC_PRECISION,
    CategoryPrediction,
    ClipCategoryClassifier,
    garment_on_white,
    load_category_classifier,
    predict_category,
    resolve_category_model,
)
from pipeline.errors import BackendUnavailableError, InputError
from tests.conftest import garment_photo
from tiny_models import build_tiny_clip

@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("STUDIO_CATEGORY_MODEL", raising=False)
    category_model.forget_category_classifiers()
    yield
    category_model.forget_category_classifiers()


def on_background(mask: np.ndarray, garment: np.ndarray, background_rgb: tuple[int, int, int]) -> Image.Image:
    """The same garment pixels composited on a different flat background."""
    background = np.broadcast_to(np.array(background_rgb, dtype=np.uint8), garment.shape)
    return Image.fromarray(np.where(mask[..., None], garment, background).astype(np.uint8))


# ---------------------------------------------------------------- model id and tokenizer

def test_model_id_explicit_beats_env_beats_default(monkeypatch):
    assert resolve_category_model() == DEFAULT_CATEGORY_MODEL
    monkeypatch.setenv("STUDIO_CATEGORY_MODEL", "someone/other-clip")
    assert resolve_category_model() == "someone/other-clip"
    assert resolve_category_model("/models/clip") == "/models/clip"


def test_tiny_tokenizer_encodes_every_prompt_without_unknown_tokens(tiny_clip):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip)
    prompt = category_model.PROMPT_TEMPLATES[1].format("a long-sleeved top")
    ids = tokenizer(prompt)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1]  # no character fell back to the unknown token
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded.replace(" ", "") == prompt.replace(" ", "")  # CLIP decodes punctuation as separate words


# ---------------------------------------------------------------- loading

def test_loads_from_a_local_folder_through_the_hub_loader(tiny_clip):
    classifier = load_category_classifier(str(tiny_clip))
    assert isinstance(classifier, ClipCategoryClassifier)
    assert classifier.name == "clip" and classifier.model_id == str(tiny_clip)
    assert classifier.device == "cpu" and not classifier.model.training
    assert classifier.model.dtype == category_model.dtype_for("cpu")
    assert load_category_classifier(str(tiny_clip)) is classifier  # one per model id per process


def test_missing_hub_model_offline_fails_fast_with_one_sentence():
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        load_category_classifier("resell-studio-tests/no-such-clip")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "resell-studio-tests/no-such-clip" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message and "Traceback" not in message


def test_unreachable_hub_costs_one_quick_request_and_no_download(monkeypatch):
    import huggingface_hub
    import httpx
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    probes = []

    def unreachable(url, **kwargs):
        probes.append((url, kwargs.get("timeout")))
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    def no_download(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("from_pretrained went to the network after the Hub was found unreachable")
        raise OSError("not in the cache")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_download)
    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        load_category_classifier("resell-studio-tests/unreachable-clip")
    assert len(probes) == 1 and probes[0][1] <= 5
    assert "resell-studio-tests/unreachable-clip" in probes[0][0]


def test_device_and_dtype_choice():
    import torch

    assert category_model.dtype_for("cuda") == torch.float16
    assert category_model.dtype_for("cuda:1") == torch.float16
    assert category_model.dtype_for("cpu") == category_model.dtype_for("mps") == torch.float32


def test_failed_load_is_remembered_and_not_retried(monkeypatch):
    model_id = "resell-studio-tests/remembered-failure"
    with pytest.raises(BackendUnavailableError):
        load_category_classifier(model_id)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a failed load was retried")

    monkeypatch.setattr(category_model, "ClipCategoryClassifier", must_not_run)
    with pytest.raises(BackendUnavailableError, match="remembered-failure"):
        load_category_classifier(model_id)


def test_missing_folder_and_non_clip_folder_are_unavailable(tmp_path):
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        load_category_classifier(str(tmp_path / "missing"))
    not_clip = tmp_path / "not-clip"
    not_clip.mkdir()
    (not_clip / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    with pytest.raises(BackendUnavailableError, match="not CLIP"):
        load_category_classifier(str(not_clip))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackendUnavailableError, match="not a usable CLIP checkpoint"):
        load_category_classifier(str(empty))


# ---------------------------------------------------------------- backends

def test_auto_falls_back_to_the_trained_model_when_clip_weights_are_missing():
    image, mask = garment_photo(size=(120, 160))
    prediction = predict_category(image, mask, backend="auto", model_id="resell-studio-tests/no-such-clip")
    assert prediction.backend == "trained"  # the heuristic comes after it: tests/test_category_trained.py
    assert prediction.category in CATEGORIES


def test_the_heuristic_answers_with_its_one_guess():
    image, mask = garment_photo(size=(120, 160))
    prediction = predict_category(image, mask, backend="heuristic")
    assert prediction.backend == "heuristic"
    assert prediction.scores == {prediction.category: HEURISTIC_PRECISION[prediction.category]}
    assert prediction.confidence < 1.0 and prediction.alternative is None


def test_clip_never_falls_back_silently():
    image, mask = garment_photo(size=(120, 160))
    with pytest.raises(BackendUnavailableError):
        predict_category(image, mask, backend="clip", model_id="resell-studio-tests/no-such-clip")


def test_unknown_backend_lists_the_choices():
    image, mask = garment_photo(size=(120, 160))
    with pytest.raises(InputError, match="auto, clip, trained, heuristic"):
        predict_category(image, mask, backend="sam")


def test_auto_and_clip_use_the_model_when_it_loads(tiny_clip):
    image, mask = garment_photo(size=(120, 160))
    for backend in ("auto", "clip"):
        prediction = predict_category(image, mask, backend=backend, model_id=str(tiny_clip))
        assert prediction.backend == "clip"


# ---------------------------------------------------------------- predictions

def test_prediction_is_a_category_with_probabilities(tiny_clip):
    image, mask = garment_photo(size=(120, 160))
    prediction = load_category_classifier(str(tiny_clip)).predict(image, mask)
    assert isinstance(prediction, CategoryPrediction)
    assert prediction.category in CATEGORIES and set(prediction.scores) == set(CATEGORIES)
    assert 0 < prediction.confidence <= 1
    assert prediction.confidence == max(prediction.scores.values()) == prediction.scores[prediction.category]
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)


def test_text_embeddings_are_computed_once(tiny_clip, monkeypatch):
    classifier = load_category_classifier(str(tiny_clip))
    calls = []
    original = classifier.model.get_text_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(classifier.model, "get_text_features", counting)
    for seed in range(3):
        image, mask = garment_photo(size=(120, 160), seed=seed)
        classifier.predict(image, mask)
    assert len(calls) == 1


def test_same_input_same_output(tiny_clip):
    classifier = load_category_classifier(str(tiny_clip))
    image, mask = garment_photo(size=(120, 160))
    assert classifier.predict(image, mask) == classifier.predict(image, mask)


def test_background_outside_the_mask_does_not_vote(tiny_clip):
    image, mask = garment_photo(size=(120, 160))
    garment = np.asarray(image)
    on_red = on_background(mask, garment, (200, 30, 30))
    on_green = on_background(mask, garment, (20, 160, 60))
    classifier = load_category_classifier(str(tiny_clip))
    assert classifier.predict(on_red, mask).scores == classifier.predict(on_green, mask).scores
    # ...whereas the garment's own pixels do reach the model.
    recoloured = Image.fromarray(np.where(mask[..., None], np.uint8(240), garment))
    assert classifier.predict(recoloured, mask).scores != classifier.predict(image, mask).scores


def test_cutout_is_the_garment_on_white_cropped_with_a_margin():
    image, mask = garment_photo(size=(120, 160))
    cutout = np.asarray(garment_on_white(image, mask))
    assert cutout.shape[0] == cutout.shape[1]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert cutout.shape[0] > max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1  # a margin around the garment
    assert (cutout[0] == 255).all() and (cutout[:, 0] == 255).all()            # background is white
    assert (cutout.reshape(-1, 3) != 255).any(axis=1).sum() == mask.sum()      # every garment pixel, nothing else


def test_cutout_rejects_an_empty_or_mismatched_mask():
    image, mask = garment_photo(size=(120, 160))
    with pytest.raises(InputError, match="empty"):
        garment_on_white(image, np.zeros_like(mask))
    with pytest.raises(InputError, match="120x160"):
        garment_on_white(image, mask[:-1])


def test_concurrent_predictions_agree(tiny_clip):
    from concurrent.futures import ThreadPoolExecutor

    image, mask = garment_photo(size=(120, 160))
    with ThreadPoolExecutor(max_workers=4) as pool:
        classifiers = list(pool.map(lambda _: load_category_classifier(str(tiny_clip)), range(4)))
        results = list(pool.map(lambda _: classifiers[0].predict(image, mask), range(4)))
    assert all(c is classifiers[0] for c in classifiers)
    assert all(result == results[0] for result in results)
