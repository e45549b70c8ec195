r"""Train the garment network (`pipeline/garment_net.py`) on the CPU from the fused cut-out's masks.

    .venv/bin/python scripts/garment_net_data.py ../shared/data/flatlay-train /tmp/garment_net/train.npz
    .venv/bin/python scripts/train_garment_net.py /tmp/garment_net/train.npz \
        --out pipeline/models/garment_net.safetensors

That is how the committed weights were made (2 minutes an epoch on a 2-core CPU, 10 epochs; the masks before
it, 30 minutes). The backbone starts from the category model's (`pipeline/models/category_cnn.safetensors`,
itself started from ImageNet), its first four layers frozen. Seeded (torch, numpy). Each batch: the photo scaled
to a random 232-300 px, a random 224 px square of it, mirrored half the time, with light, contrast and white
balance varied. The loss (binary cross-entropy plus Dice) leaves out the padding and a 2 px band along each
label's outline, where the labels are least sure. Photos the cut-out refused carry no label and are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.category_cnn import WEIGHTS_PATH as CATEGORY_WEIGHTS  # noqa: E402
from pipeline.category_cnn import normalise  # noqa: E402
from pipeline.garment_net import GarmentNet  # noqa: E402

CROP = 224
BATCH = 16
SCALED_SIDE = (232, 300)
FROZEN_LAYERS = 4
LEARNING_RATES = (3e-4, 3e-3)  # backbone, pyramid and head
EDGE_BAND = 5  # pixels: the max-pool window whose dilation minus erosion is left out of the loss


def category_backbone() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    prefix = "backbone.features."
    return {name[len(prefix):]: tensor.float() for name, tensor in load_file(str(CATEGORY_WEIGHTS)).items()
            if name.startswith(prefix)}


class Batches:
    """The training photos and their labels, and the augmented batches drawn from them."""

    def __init__(self, path: Path) -> None:
        data = np.load(path)
        missing = {"images", "masks", "sizes"} - set(data.files)
        if missing:
            raise SystemExit(f"{path} has no {', '.join(sorted(missing))}: make it with scripts/garment_net_data.py")
        self.images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy((data["masks"] > 127).astype(np.uint8))[:, None]
        self.sizes = data["sizes"]
        self.valid = torch.zeros_like(self.labels)
        for index, (height, width) in enumerate(self.sizes):
            self.valid[index, 0, :height, :width] = 1
        self.usable = torch.nonzero(self.labels.flatten(1).float().mean(1) > 0.02).flatten().numpy()

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, labels, loss weights), each (N, C, CROP, CROP)."""
        side = int(np.random.uniform(*SCALED_SIDE))
        canvas = self.images.shape[-1]
        images = F.interpolate(self.images[indices].float() / 255.0, size=(side, side), mode="bilinear",
                               align_corners=False, antialias=True)
        labels = F.interpolate(self.labels[indices].float(), size=(side, side), mode="nearest")
        valid = F.interpolate(self.valid[indices].float(), size=(side, side), mode="nearest")
        out_images = torch.zeros(len(indices), 3, CROP, CROP)
        out_labels = torch.zeros(len(indices), 1, CROP, CROP)
        out_valid = torch.zeros_like(out_labels)
        for row, index in enumerate(indices):
            height, width = (int(size * side / canvas) for size in self.sizes[index])
            top = np.random.randint(0, max(1, height - CROP + 1))
            left = np.random.randint(0, max(1, width - CROP + 1))
            window = (slice(None), slice(top, top + CROP), slice(left, left + CROP))
            image, label, mask = images[row][window], labels[row][window], valid[row][window]
            if np.random.rand() < 0.5:
                image, label, mask = image.flip(-1), label.flip(-1), mask.flip(-1)
            gain = torch.tensor(np.random.uniform(0.85, 1.15, 3), dtype=torch.float32).view(3, 1, 1)
            image = ((image - 0.5) * np.random.uniform(0.8, 1.2) + 0.5 + np.random.uniform(-0.1, 0.1)) * gain
            height, width = image.shape[1:]
            out_images[row, :, :height, :width] = image.clamp(0, 1)
            out_labels[row, :, :height, :width] = label
            out_valid[row, :, :height, :width] = mask
        dilated = F.max_pool2d(out_labels, EDGE_BAND, 1, EDGE_BAND // 2)
        eroded = -F.max_pool2d(-out_labels, EDGE_BAND, 1, EDGE_BAND // 2)
        return normalise(out_images), out_labels, out_valid * (1 - (dilated - eroded))


def loss_of(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    logits = F.interpolate(logits, size=labels.shape[2:], mode="bilinear", align_corners=False)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    cross_entropy = (cross_entropy * weights).sum() / weights.sum().clamp(min=1)
    predicted = torch.sigmoid(logits) * weights
    dice = 1 - (2 * (predicted * labels).sum() + 1) / (predicted.sum() + (labels * weights).sum() + 1)
    return cross_entropy + dice


def train(data: Batches, epochs: int) -> GarmentNet:
    model = GarmentNet()
    model.backbone.load_state_dict(category_backbone(), strict=False)  # the category model's last layer is unused
    for parameter in model.backbone[:FROZEN_LAYERS].parameters():
        parameter.requires_grad_(False)
    pyramid = [*model.lateral.parameters(), *model.smooth.parameters(), *model.head.parameters()]
    optimiser = torch.optim.AdamW([
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": LEARNING_RATES[0]},
        {"params": pyramid, "lr": LEARNING_RATES[1]}], weight_decay=1e-4)
    steps = epochs * math.ceil(len(data.usable) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=list(LEARNING_RATES), total_steps=steps,
                                                   pct_start=0.1)
    started = time.time()
    for epoch in range(epochs):
        model.train()
        order = np.random.permutation(data.usable)
        total = 0.0
        for start in range(0, len(order), BATCH):
            images, labels, weights = data.batch(order[start:start + BATCH])
            loss = loss_of(model(images), labels, weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(images)
        print(json.dumps({"epoch": epoch, "loss": round(total / len(order), 4),
                          "minutes": round((time.time() - started) / 60, 1)}), flush=True)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path, help="the .npz written by scripts/garment_net_data.py")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors to write (float32)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(2)
    data = Batches(args.train)
    print(f"training photos: {len(data.usable)}", flush=True)
    model = train(data, args.epochs)
    from safetensors.torch import save_file

    # float32: in float16 the sure/unsure thresholds of the fusion move by a pixel along 27 of 301 masks
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(args.out), metadata={"epochs": str(args.epochs), "seed": str(args.seed)})
    print(json.dumps({"written": str(args.out), "bytes": args.out.stat().st_size}))


if __name__ == "__main__":
    main()
