"""Issue 13: the category model the project trains itself, loaded from the committed file, in the fallback order
CLIP -> trained -> heuristic, with probabilities that sum to one over the four categories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import garment_photo
from pipeline import category_cnn, category_model
from pipeline.attributes import CATEGORIES
from pipeline.category_cnn import WEIGHTS_PATH, CategoryCNN, TrainedCategoryModel
from pipeline.category_model import predict_category
from pipeline.errors import BackendUnavailableError


@pytest.fixture(autouse=True)
def fresh_model(monkeypatch):
    monkeypatch.setattr(category_model, "_trained", None)


def test_the_committed_weights_load_and_are_small():
    assert WEIGHTS_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size < 6_000_000
    model = TrainedCategoryModel.load()
    assert float(model.model.temperature) > 0
    facts = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
    assert 0.0 <= facts["validation_accuracy"] <= 1.0


def test_a_prediction_is_a_probability_over_the_four_categories():
    image, mask = garment_photo(size=(300, 400))
    prediction = predict_category(image, mask, backend="trained")
    assert prediction.backend == "trained"
    assert set(prediction.scores) == set(CATEGORIES)
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.category == max(prediction.scores, key=prediction.scores.get)
    assert prediction.confidence == prediction.scores[prediction.category]


def test_a_big_photo_is_reduced_before_the_model_and_gives_the_same_answer():
    image, mask = garment_photo(size=(300, 400))
    big_image = image.resize((3000, 4000))
    big_mask = np.kron(mask, np.ones((10, 10), bool))
    small = predict_category(image, mask, backend="trained")
    big = predict_category(big_image, big_mask, backend="trained")
    assert big.category == small.category
    assert big.confidence == pytest.approx(small.confidence, abs=0.1)


def test_auto_falls_back_to_the_heuristic_when_the_trained_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(category_cnn, "WEIGHTS_PATH", tmp_path / "missing.safetensors")
    image, mask = garment_photo(size=(120, 160))
    prediction = predict_category(image, mask, backend="auto", model_id="resell-studio-tests/no-such-clip")
    assert prediction.backend == "heuristic"
    with pytest.raises(BackendUnavailableError, match="missing"):
        predict_category(image, mask, backend="trained")


def test_a_damaged_weights_file_is_one_clear_error(tmp_path):
    damaged = tmp_path / "category_cnn.safetensors"
    save_file({"not.a.weight": torch.zeros(3)}, str(damaged))
    with pytest.raises(BackendUnavailableError, match="cannot be read"):
        TrainedCategoryModel.load(damaged)


def test_the_temperature_travels_with_the_weights(tmp_path):
    model = CategoryCNN()
    model.temperature.fill_(2.5)
    path = tmp_path / "category_cnn.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path))
    assert float(TrainedCategoryModel.load(path).model.temperature) == 2.5


def _save(model: CategoryCNN, path, **metadata) -> None:
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path),
              metadata=metadata or None)


def test_the_input_side_travels_with_the_weights(tmp_path):
    path = tmp_path / "category_cnn.safetensors"
    _save(CategoryCNN(), path, input_side="64")
    loaded = TrainedCategoryModel.load(path)
    assert loaded.input_side == 64
    image, mask = garment_photo(size=(120, 160))
    answer = loaded.predict(np.asarray(image), mask)
    assert sum(answer.scores.values()) == pytest.approx(1.0, abs=1e-5)


def test_weights_with_an_impossible_input_side_are_one_clear_error(tmp_path):
    path = tmp_path / "category_cnn.safetensors"
    _save(CategoryCNN(), path, input_side="100")
    with pytest.raises(BackendUnavailableError, match="input side 100 px"):
        TrainedCategoryModel.load(path)
