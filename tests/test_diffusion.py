"""The diffusion backend on tiny random SD 1.5 / SDXL stacks, loaded from folders like Hub ids, offline."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.diffusion import (
    DEFAULT_MODELS,
    DiffusionRequest,
    GenerationCancelled,
    forget_diffusion_backends,
    load_diffusion_backend,
    models_from,
    validate_request,
)
from pipeline.errors import BackendUnavailableError, InputError
from tiny_models import build_tiny_diffusion, tiny_diffusion  # noqa: F401  (fixture)

SIZE = 256


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def backend(tiny_diffusion):  # noqa: F811
    forget_diffusion_backends()
    yield load_diffusion_backend(tiny_diffusion.models, device="cpu")
    forget_diffusion_backends()


def garment() -> Image.Image:
    image = Image.new("RGB", (96, 128), "white")
    ImageDraw.Draw(image).rectangle((20, 20, 76, 110), fill=(180, 30, 40))
    return image


def pose() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), "black")
    draw = ImageDraw.Draw(image)
    draw.line((128, 40, 128, 150), fill=(255, 0, 0), width=6)
    draw.line((80, 80, 176, 80), fill=(0, 255, 0), width=6)
    return image


def request(**changes) -> DiffusionRequest:
    base = DiffusionRequest(prompt="a woman wearing a red t-shirt, studio photo", negative_prompt="blurry",
                            garment_image=garment(), pose_image=pose(), width=SIZE, height=SIZE, steps=2,
                            guidance_scale=5.0, ip_adapter_scale=0.8, controlnet_scale=1.0, seeds=[1, 2])
    return replace(base, **changes)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def same(a: Image.Image, b: Image.Image) -> bool:
    return bool(np.abs(pixels(a) - pixels(b)).max() <= 1)  # batched BLAS may round the last bit differently


# ---------------------------------------------------------------------------------------------- loading


def test_loads_the_controlnet_pipeline_from_folders(backend, tiny_diffusion):  # noqa: F811
    assert type(backend.pipe).__name__ == "StableDiffusionControlNetPipeline"
    assert backend.device == "cpu" and backend.pipe.image_encoder is not None
    ids = backend.model_ids()
    assert ids["base_model"] == tiny_diffusion.models.base_model
    assert models_from(**ids) == tiny_diffusion.models


def test_one_backend_per_models_and_flags(backend, tiny_diffusion):  # noqa: F811
    assert load_diffusion_backend(tiny_diffusion.models, device="cpu") is backend
    tiled = load_diffusion_backend(tiny_diffusion.models, device="cpu", vae_tiling=True)
    assert tiled is not backend and tiled.vae_tiling


def test_sdxl_loads_and_generates(tmp_path: Path):
    tiny = build_tiny_diffusion(tmp_path, "sdxl")
    sdxl = load_diffusion_backend(tiny.models, device="cpu")
    assert type(sdxl.pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    images = sdxl.generate(request(seeds=[3], steps=1))
    assert [image.size for image in images] == [(SIZE, SIZE)]


def test_missing_hub_weights_offline_fail_fast_and_are_remembered(tiny_diffusion):  # noqa: F811
    models = replace(tiny_diffusion.models, base_model="resell-studio-tests/no-such-diffusion-model")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="HF_HUB_OFFLINE") as first:
        load_diffusion_backend(models, device="cpu")
    with pytest.raises(BackendUnavailableError) as second:
        load_diffusion_backend(models, device="cpu")
    assert time.monotonic() - started < 10
    assert str(first.value) == str(second.value) and "\n" not in str(first.value)


def test_missing_folder_is_one_sentence(tiny_diffusion, tmp_path: Path):  # noqa: F811
    models = replace(tiny_diffusion.models, controlnet=str(tmp_path / "nowhere"))
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        load_diffusion_backend(models, device="cpu")


def test_family_must_match_the_base_model(tiny_diffusion):  # noqa: F811
    with pytest.raises(BackendUnavailableError, match="SD 1.5 pipeline"):
        load_diffusion_backend(replace(tiny_diffusion.models, family="sdxl"), device="cpu")


def test_a_missing_lora_offline_is_explained(tiny_diffusion, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = replace(tiny_diffusion.models, lora="no-such-org/no-such-lora", lora_weight_name="lora.safetensors")
    with pytest.raises(BackendUnavailableError, match="no-such-org/no-such-lora"):
        load_diffusion_backend(models, device="cpu")


# ---------------------------------------------------------------------------------------------- generating


def test_generates_one_image_per_seed_with_progress_per_step(backend):
    reports: list[tuple[float, str]] = []
    images = backend.generate(request(), progress=lambda fraction, message: reports.append((fraction, message)))
    assert [(image.size, image.mode) for image in images] == [((SIZE, SIZE), "RGB")] * 2
    assert reports == [(0.5, "Step 1 of 2"), (1.0, "Step 2 of 2")]


def test_seeds_make_each_image_reproducible_alone(backend):
    first, second = backend.generate(request(seeds=[11, 12]))
    assert not same(first, second)
    (alone,) = backend.generate(request(seeds=[12]))
    assert same(alone, second)
    twin_a, twin_b = backend.generate(request(seeds=[11, 11]))
    assert same(twin_a, first) and same(twin_b, first)


def test_ip_adapter_scale_is_applied_per_request(backend):
    (weak,) = backend.generate(request(seeds=[5], ip_adapter_scale=0.0))
    (strong,) = backend.generate(request(seeds=[5], ip_adapter_scale=2.0))
    (weak_again,) = backend.generate(request(seeds=[5], ip_adapter_scale=0.0))
    assert not same(weak, strong)
    assert same(weak, weak_again)


def test_cancel_after_the_first_step_returns_nothing(backend):
    reports: list[float] = []
    with pytest.raises(GenerationCancelled, match="Cancelled."):
        backend.generate(request(steps=3), progress=lambda fraction, _: reports.append(fraction),
                         should_cancel=lambda: len(reports) >= 1)
    assert len(reports) == 1
    assert len(backend.generate(request(steps=1, seeds=[1]))) == 1  # the pipeline is usable again


def test_cancel_before_start(backend):
    with pytest.raises(GenerationCancelled):
        backend.generate(request(), should_cancel=lambda: True)


def test_concurrent_calls_are_serialised(backend):
    expected = backend.generate(request(steps=1, seeds=[21]))[0]
    results: list[Image.Image] = []
    threads = [threading.Thread(target=lambda: results.extend(backend.generate(request(steps=1, seeds=[21]))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(same(image, expected) for image in results)


# ---------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("changes, words", [
    ({"width": 250}, "width"), ({"height": 300}, "height"), ({"width": 4096}, "width"),
    ({"steps": 0}, "steps"), ({"steps": 151}, "steps"), ({"guidance_scale": -1.0}, "guidance"),
    ({"guidance_scale": 31.0}, "guidance"), ({"ip_adapter_scale": 2.5}, "IP-Adapter"),
    ({"controlnet_scale": -0.1}, "ControlNet"), ({"seeds": []}, "seeds"), ({"seeds": list(range(9))}, "seeds"),
    ({"seeds": [-1]}, "seeds"), ({"seeds": [True]}, "seeds"), ({"prompt": "  "}, "prompt"),
    ({"pose_image": None}, "pose image"), ({"steps": 2.5}, "steps"),
])
def test_validate_request_refuses_out_of_range(changes, words):
    with pytest.raises(InputError, match=words):
        validate_request(request(**changes))


def test_validate_request_accepts_the_limits():
    validate_request(request(width=2048, height=256, steps=150, guidance_scale=30.0, ip_adapter_scale=2.0,
                             controlnet_scale=0.0, seeds=list(range(8))))


def test_models_from_family_defaults_and_overrides():
    assert models_from() == DEFAULT_MODELS["sdxl"]
    sd15 = models_from("SD1.5", controlnet="my/controlnet", lora=None)
    assert sd15.family == "sd15" and sd15.controlnet == "my/controlnet"
    assert sd15.base_model == DEFAULT_MODELS["sd15"].base_model and sd15.lora is None
    with pytest.raises(InputError, match="family"):
        models_from("sd3")
    with pytest.raises(InputError, match="vae"):
        models_from("sdxl", vae="x/y")
