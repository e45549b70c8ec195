"""Category accuracy, confusion matrix and calibration on the validation flat lays: the trained model that ships
(`pipeline/models/category_cnn.safetensors`) beside the shape heuristic, on the same cut-outs.

    .venv/bin/python scripts/category_data.py ../shared/data/flatlay /tmp/category/val.npz
    .venv/bin/python benchmarks/category_accuracy.py /tmp/category/val.npz

Prints JSON. The heuristic states every guess with confidence 1.0, so its calibration error is its error rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from pipeline.attributes import guess_category  # noqa: E402
from pipeline.category_cnn import CLASSES, TrainedCategoryModel, to_tensor  # noqa: E402
from train_category_model import CATEGORY_ORDER, evaluate  # noqa: E402


def heuristic_probabilities(masks: np.ndarray) -> torch.Tensor:
    """One-hot 'class' probabilities for the heuristic's category (the first class of that category)."""
    first_class = {"top": "t-shirt", "bottom": "pants", "dress": "dress", "outerwear": "outwear"}
    rows = torch.zeros(len(masks), len(CLASSES))
    for index, mask in enumerate(masks):
        rows[index, CLASSES.index(first_class[guess_category(mask)])] = 1.0
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", type=Path, help="the .npz written by scripts/category_data.py")
    args = parser.parse_args()
    data = np.load(args.val)
    labels = torch.from_numpy(data["labels"]).long()
    model = TrainedCategoryModel.load().model
    with torch.inference_mode():
        logits = model(to_tensor(data["images"], data["masks"])) / model.temperature
    report = {
        "categories": CATEGORY_ORDER,
        "trained": evaluate(torch.softmax(logits, dim=1), labels),
        "heuristic": evaluate(heuristic_probabilities(data["masks"]), labels),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
