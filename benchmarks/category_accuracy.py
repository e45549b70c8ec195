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
from pipeline.category_cnn import CLASS_CATEGORY, CLASSES, TrainedCategoryModel, to_tensor  # noqa: E402
from pipeline.category_model import CONFIDENT_FROM  # noqa: E402
from train_category_model import CATEGORY_ORDER, evaluate, to_categories  # noqa: E402


def heuristic_probabilities(masks: np.ndarray) -> torch.Tensor:
    """One-hot 'class' probabilities for the heuristic's category (the first class of that category)."""
    first_class = {"top": "t-shirt", "bottom": "pants", "dress": "dress", "outerwear": "outwear"}
    rows = torch.zeros(len(masks), len(CLASSES))
    for index, mask in enumerate(masks):
        rows[index, CLASSES.index(first_class[guess_category(mask)])] = 1.0
    return rows


def when_the_page_asks(probabilities: torch.Tensor, labels: torch.Tensor) -> dict:
    """At CONFIDENT_FROM: the photos whose category the page states and those it asks about, and how often each is
    right; of the mistakes, how many offer the right answer as the second choice of the question."""
    categories = to_categories(probabilities)
    truth = torch.tensor([CATEGORY_ORDER.index(CLASS_CATEGORY[CLASSES[int(i)]]) for i in labels])
    ranked = categories.argsort(dim=1, descending=True)
    right = ranked[:, 0] == truth
    stated = categories.max(dim=1).values >= CONFIDENT_FROM
    wrong = ~right
    return {"confident_from": CONFIDENT_FROM,
            "stated": int(stated.sum()), "stated_right": round(float(right[stated].float().mean()), 3),
            "asked": int((~stated).sum()), "asked_right": round(float(right[~stated].float().mean()), 3),
            "mistakes": int(wrong.sum()),
            "mistakes_with_the_right_second_choice": int((ranked[wrong, 1] == truth[wrong]).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", type=Path, help="the .npz written by scripts/category_data.py")
    args = parser.parse_args()
    data = np.load(args.val)
    labels = torch.from_numpy(data["labels"]).long()
    trained = TrainedCategoryModel.load()
    if data["images"].shape[1] != trained.input_side:
        raise SystemExit(f"{args.val} holds {data['images'].shape[1]} px squares; the model reads "
                         f"{trained.input_side} px: run scripts/category_data.py with --side {trained.input_side}")
    model = trained.model
    with torch.inference_mode():
        logits = torch.cat([model(to_tensor(data["images"][i:i + 64])) for i in range(0, len(labels), 64)])
    probabilities = torch.softmax(logits / model.temperature, dim=1)
    report = {
        "categories": CATEGORY_ORDER,
        "trained": evaluate(probabilities, labels),
        "trained_when_the_page_asks": when_the_page_asks(probabilities, labels),
        "heuristic": evaluate(heuristic_probabilities(data["masks"]), labels),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
