"""Multi-reference image-editing backends: the persona's photo and the garment cut-out go in as reference images
and an instruction says "dress this person in this garment".

Two families, both Apache-2.0 and native in diffusers:

- `flux2-klein`: FLUX.2 [klein] 4B (`Flux2KleinPipeline`), step-distilled (4 steps); several reference images.
- `qwen-edit`: Qwen-Image-Edit-2511 (`QwenImageEditPlusPipeline`), 1 to 3 reference images; it reads an OpenPose
  keypoint image as a pose reference, so the card's pose goes in as a third image. 40 steps, or 4/8 with a
  Lightning LoRA (opt in with `lora` and `lora_weight_name`).

`EditBackend` has the same interface as `DiffusionBackend` (the SDXL / SD 1.5 ControlNet + IP-Adapter path): the
studio's jobs, progress, cancellation, seeds and stored parameters work the same for every family. The pipelines
load like every other model here: a Hub id or a local folder, local cache first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, replace

import torch
from PIL import Image

from pipeline.diffusion import (
    DiffusionModels,
    DiffusionRequest,
    GenerationCancelled,
    ProgressCallback,
    StepCancelled,
    choose_dtype,
    fuse_lora,
    require_accelerate,
    rgb_on_white,
    step_callback,
    validate_request,
)
from pipeline.errors import InputError, StudioError
from pipeline.families import parse_family
from pipeline.hub import load_local_first
from pipeline.sam import choose_device

logger = logging.getLogger(__name__)

EDIT_FAMILIES = ("flux2-klein", "qwen-edit")
PIPELINE_CLASSES = {"flux2-klein": "Flux2KleinPipeline", "qwen-edit": "QwenImageEditPlusPipeline"}
TAKES_POSE_IMAGE = {"flux2-klein": False, "qwen-edit": True}
TAKES_NEGATIVE_PROMPT = {"flux2-klein": False, "qwen-edit": True}
SIDE_MULTIPLE = 16  # the VAE's 8, times the transformers' 2 x 2 patches
# Qwen's scheduler ends at shift_terminal: with one step its only sigma divides 0 by 0 and the image is NaN.
MIN_STEPS = {"flux2-klein": 1, "qwen-edit": 2}


class EditBackend:
    """An image-editing pipeline on one device, given the person, the garment and (Qwen) the pose as references."""

    name = "diffusion"

    def __init__(self, models: DiffusionModels, device: str | None = None, cpu_offload: bool = False,
                 vae_tiling: bool = False) -> None:
        device_name, _ = choose_device(device)
        family_models = replace(models, family=parse_family(models.family))
        self._setup(_build_edit_pipeline(family_models, choose_dtype(device_name)), family_models, device_name,
                    cpu_offload, vae_tiling)

    @classmethod
    def from_pipeline(cls, pipe, models: DiffusionModels, device: str | None = None, cpu_offload: bool = False,
                      vae_tiling: bool = False) -> "EditBackend":
        """A backend around an already built pipeline (benchmarks)."""
        backend = cls.__new__(cls)
        backend._setup(pipe, replace(models, family=parse_family(models.family)), choose_device(device)[0],
                       cpu_offload, vae_tiling)
        return backend

    def _setup(self, pipe, models: DiffusionModels, device: str, cpu_offload: bool, vae_tiling: bool) -> None:
        self.device = device
        self.models = models
        self.pipe = pipe
        self.cpu_offload = cpu_offload and device.startswith("cuda")
        self.vae_tiling = vae_tiling
        self._lock = threading.Lock()
        self._place()

    def _place(self) -> None:
        try:
            if self.cpu_offload:
                require_accelerate()
                self.pipe.enable_model_cpu_offload(device=self.device)
            else:
                self.pipe.to(self.device)
        except torch.OutOfMemoryError as error:
            raise StudioError(f"The GPU does not have enough memory to hold {self.models.family}; turn on "
                              "--cpu-offload, or choose a lighter family (flux2-klein, sd15).") from error
        if self.vae_tiling and hasattr(self.pipe.vae, "enable_tiling"):
            self.pipe.vae.enable_tiling()
        self.pipe.set_progress_bar_config(disable=True)

    def model_ids(self) -> dict[str, str]:
        """The models this backend runs, by field name (so `models_from(**ids)` rebuilds them)."""
        return {key: value for key, value in asdict(self.models).items() if value}

    def references(self, request: DiffusionRequest) -> list[Image.Image]:
        """The reference images in the order the instruction names them: person, garment, pose."""
        images = [request.person_image] if request.person_image is not None else []
        images.append(rgb_on_white(request.garment_image))
        if TAKES_POSE_IMAGE[self.models.family] and request.with_pose:
            images.append(rgb_on_white(request.pose_image))
        return [image.convert("RGB") for image in images]

    def generate(self, request: DiffusionRequest, progress: ProgressCallback | None = None,
                 should_cancel: Callable[[], bool] | None = None) -> list[Image.Image]:
        """One image per seed, request.width x request.height; GenerationCancelled if cancelled (no images)."""
        validate_request(request)
        return self._run(request.prompt, request.negative_prompt, self.references(request), request.width,
                         request.height, request.steps, request.guidance_scale, request.seeds, progress,
                         should_cancel)

    def create(self, prompt: str, width: int, height: int, steps: int, guidance_scale: float, seed: int,
               negative_prompt: str = "") -> Image.Image:
        """A picture from the prompt alone (a persona's reference photo). FLUX.2 [klein] draws from text; the Qwen
        edit model is given a blank white canvas to replace."""
        if not prompt.strip():
            raise InputError("A reference photo needs a prompt describing the person.")
        canvas = None if self.models.family == "flux2-klein" else [Image.new("RGB", (width, height), "white")]
        return self._run(prompt, negative_prompt, canvas, width, height, steps, guidance_scale, [seed])[0]

    def _run(self, prompt: str, negative_prompt: str, references: list[Image.Image] | None, width: int, height: int,
             steps: int, guidance_scale: float, seeds: list[int], progress: ProgressCallback | None = None,
             should_cancel: Callable[[], bool] | None = None) -> list[Image.Image]:
        if width % SIDE_MULTIPLE or height % SIDE_MULTIPLE:  # the pipelines would quietly round them down
            raise InputError(f"Cannot generate: {self.models.family} makes sizes in multiples of {SIDE_MULTIPLE} "
                             f"pixels (got {width} x {height}).")
        if steps < MIN_STEPS[self.models.family]:
            raise InputError(f"Cannot generate: {self.models.family} needs at least {MIN_STEPS[self.models.family]} "
                             f"steps (got {steps}).")
        # CPU generators: the same seed gives the same starting noise on any device.
        arguments = dict(
            image=references or None, prompt=prompt, width=width, height=height, num_inference_steps=steps,
            num_images_per_prompt=len(seeds),
            generator=[torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds],
            output_type="pil", callback_on_step_end=step_callback(progress, should_cancel),
        )
        if TAKES_NEGATIVE_PROMPT[self.models.family]:
            # Qwen's classifier-free guidance runs only with a negative prompt and true_cfg_scale > 1.
            arguments.update(negative_prompt=negative_prompt or " ", true_cfg_scale=float(guidance_scale))
        else:
            arguments.update(guidance_scale=float(guidance_scale))
        with self._lock:
            if should_cancel is not None and should_cancel():
                raise GenerationCancelled()
            try:
                result = self.pipe(**arguments)
            except StepCancelled:
                raise GenerationCancelled() from None
            except torch.OutOfMemoryError as error:
                raise self._out_of_memory(len(seeds), width, height) from error
        return [image.convert("RGB") for image in result.images]

    @staticmethod
    def _out_of_memory(count: int, width: int, height: int) -> StudioError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return StudioError(f"The GPU ran out of memory generating {count} image(s) at {width} x {height}; lower the "
                           "batch size or the resolution, or turn on --cpu-offload.")


def allow_qwen_processor_without_torchvision() -> None:
    """Without torchvision, let Qwen2VLProcessor be made and loaded with only its image processor and tokenizer.

    transformers 5 requires a Qwen2VLProcessor's video processor, a class that needs torchvision, so without
    torchvision (a CPU-only torch, where no torchvision wheel matches) no Qwen2VLProcessor loads, the Hub's
    included. Images and text are all QwenImageEditPlusPipeline gives it. With torchvision this does nothing."""
    from transformers import Qwen2VLProcessor
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        Qwen2VLProcessor.get_attributes = classmethod(lambda cls: ["image_processor", "tokenizer"])


def _build_edit_pipeline(models: DiffusionModels, dtype: torch.dtype):
    """The family's pipeline (and its few-step LoRA, fused), still on the CPU."""
    import diffusers

    if models.family == "qwen-edit":
        allow_qwen_processor_without_torchvision()
    pipeline_class = getattr(diffusers, PIPELINE_CLASSES[models.family])
    pipe = load_local_first("base model", models.base_model, lambda local: pipeline_class.from_pretrained(
        models.base_model, dtype=dtype, local_files_only=local))
    if not isinstance(pipe, pipeline_class):
        raise StudioError(f"The base model '{models.base_model}' is a {type(pipe).__name__}, not the "
                          f"{PIPELINE_CLASSES[models.family]} the family '{models.family}' needs.")
    if models.lora:
        fuse_lora(pipe, models, trailing_timesteps=False)
    return pipe
