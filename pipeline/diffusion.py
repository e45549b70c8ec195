"""The diffusion backend: a virtual model wearing the garment.

One code path for SDXL and SD 1.5: `AutoPipelineForText2Image.from_pretrained(base, controlnet=...)` picks the
family's ControlNet pipeline; an OpenPose ControlNet holds the model card's pose, and an IP-Adapter takes the garment
cut-out (on white) as an image prompt. An optional few-step LoRA (SDXL-Lightning, Hyper-SD) is fused in at load time.

- Loading: every id is a Hub id or a local folder, local cache first (`pipeline.hub`); one pipeline per (models,
  device, memory flags) per process, moved to the device once and reused; a failed load is remembered.
- Generation: one image per seed, each from its own CPU `torch.Generator`, so image i is reproducible from seeds[i]
  alone, in any batch and on any device. A step callback reports progress and stops the run on cancellation; a
  cancelled run returns nothing. One lock serialises pipeline calls (the IP-Adapter scale is pipeline state).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

import torch
from PIL import Image

from pipeline.errors import BackendUnavailableError, InputError, StudioError
from pipeline.families import parse_family
from pipeline.hub import LoadedOnce, display_source, load_local_first
from pipeline.sam import choose_device


MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = 256, 2048, 8
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_ADAPTER_SCALE = 2.0
MAX_SEEDS = 8
MAX_SEED = 2**63 - 1

OOM_MESSAGE = (
    "The GPU ran out of memory generating {count} image(s) at {width} x {height}; lower the batch size or the "
    "resolution, or turn on --cpu-offload and VAE tiling."
)

ProgressCallback = Callable[[float, str], None]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffusionModels:
    """Where each part of the pipeline comes from: Hub ids or local folders."""

    family: str  # one of FAMILIES
    base_model: str  # a diffusers pipeline: unet or transformer, vae, text encoder(s), tokenizer(s), scheduler
    controlnet: str = ""  # OpenPose ControlNet (sdxl, sd15; the edit families take no ControlNet)
    ip_adapter: str = ""  # repo or folder holding the IP-Adapter weights file (sdxl, sd15)
    ip_adapter_subfolder: str = ""  # e.g. "sdxl_models" / "models"; "" for a flat folder
    ip_adapter_weight_name: str = ""  # e.g. "ip-adapter_sdxl_vit-h.safetensors"
    image_encoder: str = ""  # CLIPVisionModelWithProjection repo or folder
    image_encoder_subfolder: str = ""
    lora: str | None = None  # optional few-step LoRA
    lora_weight_name: str | None = None


DEFAULT_MODELS: dict[str, DiffusionModels] = {
    "sdxl": DiffusionModels(
        family="sdxl",
        base_model="stabilityai/stable-diffusion-xl-base-1.0",
        controlnet="thibaud/controlnet-openpose-sdxl-1.0",
        ip_adapter="h94/IP-Adapter",
        ip_adapter_subfolder="sdxl_models",
        # The ViT-H variant shares the SD 1.5 image encoder (632M) instead of the 1.8B bigG one.
        ip_adapter_weight_name="ip-adapter_sdxl_vit-h.safetensors",
        image_encoder="h94/IP-Adapter",
        image_encoder_subfolder="models/image_encoder",
    ),
    "sd15": DiffusionModels(
        family="sd15",
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        controlnet="lllyasviel/control_v11p_sd15_openpose",
        ip_adapter="h94/IP-Adapter",
        ip_adapter_subfolder="models",
        ip_adapter_weight_name="ip-adapter_sd15.safetensors",
        image_encoder="h94/IP-Adapter",
        image_encoder_subfolder="models/image_encoder",
    ),
    # Multi-reference editing (pipeline/edit_diffusion.py): the pipeline is the whole model.
    "flux2-klein": DiffusionModels(family="flux2-klein", base_model="black-forest-labs/FLUX.2-klein-4B"),
    # Opt into 4- or 8-step generation with lora="lightx2v/Qwen-Image-Edit-2511-Lightning" and its weight name.
    "qwen-edit": DiffusionModels(family="qwen-edit", base_model="Qwen/Qwen-Image-Edit-2511"),
}


def required_weights(models: DiffusionModels) -> list[tuple[str, str, str]]:
    """(what, Hub id or folder, a file it must hold) for every model the family loads."""
    needed = [("base model", models.base_model, "model_index.json")]
    if models.controlnet:
        needed.append(("ControlNet", models.controlnet, "config.json"))
    if models.ip_adapter:
        adapter_file = "/".join(filter(None, [models.ip_adapter_subfolder, models.ip_adapter_weight_name]))
        needed.append(("IP-Adapter", models.ip_adapter, adapter_file))
    if models.image_encoder:
        needed.append(("image encoder", models.image_encoder,
                       "/".join(filter(None, [models.image_encoder_subfolder, "config.json"]))))
    return needed


class GenerationCancelled(StudioError):
    """The user cancelled the run; no image was produced."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message)


def models_from(family: str = "sdxl", **overrides: str | None) -> DiffusionModels:
    """The family's default models with `overrides` applied (None values are ignored)."""
    defaults = DEFAULT_MODELS[parse_family(family)]
    known = {field.name for field in fields(DiffusionModels)} - {"family"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"Unknown model setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    chosen = {key: value.strip() if isinstance(value, str) else value
              for key, value in overrides.items() if value is not None}
    return replace(defaults, **chosen)


@dataclass(frozen=True)
class DiffusionRequest:
    prompt: str
    negative_prompt: str
    garment_image: Image.Image  # the garment cut-out on white: the IP-Adapter image
    pose_image: Image.Image  # the rendered OpenPose image: the ControlNet image, width x height
    width: int
    height: int
    steps: int
    guidance_scale: float
    ip_adapter_scale: float
    controlnet_scale: float
    seeds: list[int]  # one image per seed; image i is reproducible from seeds[i] alone
    person_image: Image.Image | None = None  # the persona's reference photo (edit families; ignored by SDXL/SD 1.5)
    with_pose: bool = True  # whether an edit family that reads poses gets the pose image (not for the 3D ghost)


def validate_request(request: DiffusionRequest) -> None:
    """InputError listing every parameter that is out of range."""
    problems = [*_size_problems(request.width, request.height), *_number_problems(request),
                *_seed_problems(request.seeds), *_image_problems(request)]
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        problems.insert(0, "the prompt is empty")
    if not isinstance(request.negative_prompt, str):
        problems.append("the negative prompt must be text")
    if problems:
        raise InputError("Cannot generate: " + "; ".join(problems) + ".")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN


def _size_problems(width, height) -> list[str]:
    problems = []
    for name, side in (("width", width), ("height", height)):
        if not _is_int(side) or not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_MULTIPLE:
            problems.append(f"the {name} must be a multiple of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE} "
                            f"(got {side!r})")
    return problems


def _number_problems(request: DiffusionRequest) -> list[str]:
    problems = []
    if not _is_int(request.steps) or not 1 <= request.steps <= MAX_STEPS:
        problems.append(f"steps must be a whole number from 1 to {MAX_STEPS} (got {request.steps!r})")
    ranges = (("guidance scale", request.guidance_scale, MAX_GUIDANCE),
              ("IP-Adapter scale", request.ip_adapter_scale, MAX_ADAPTER_SCALE),
              ("ControlNet scale", request.controlnet_scale, MAX_ADAPTER_SCALE))
    for name, value, top in ranges:
        if not _is_number(value) or not 0 <= value <= top:
            problems.append(f"the {name} must be from 0 to {top:g} (got {value!r})")
    return problems


def _seed_problems(seeds) -> list[str]:
    if not isinstance(seeds, (list, tuple)) or not 1 <= len(seeds) <= MAX_SEEDS:
        count = len(seeds) if isinstance(seeds, (list, tuple)) else seeds
        return [f"give 1 to {MAX_SEEDS} seeds, one per image (got {count!r})"]
    bad = [seed for seed in seeds if not _is_int(seed) or not 0 <= seed <= MAX_SEED]
    return [f"seeds must be whole numbers from 0 to 2^63-1 (got {bad[0]!r})"] if bad else []


def _image_problems(request: DiffusionRequest) -> list[str]:
    return [f"the {name} is not an image" for name, image in
            (("garment image", request.garment_image), ("pose image", request.pose_image))
            if not isinstance(image, Image.Image)]


class StepCancelled(Exception):
    """Raised inside the step callback to stop the pipeline before the remaining steps and the VAE decode."""


class DiffusionBackend:
    """ControlNet (pose) + IP-Adapter (garment) text-to-image on one device; safe to share between threads."""

    name = "diffusion"

    def __init__(self, models: DiffusionModels, device: str | None = None, cpu_offload: bool = False,
                 vae_tiling: bool = False) -> None:
        device_name, _ = choose_device(device)
        family_models = replace(models, family=parse_family(models.family))
        pipe = _build_pipeline(family_models, choose_dtype(device_name))
        self._setup(pipe, family_models, device_name, cpu_offload, vae_tiling)

    @classmethod
    def from_pipeline(cls, pipe, models: DiffusionModels, device: str | None = None, cpu_offload: bool = False,
                      vae_tiling: bool = False) -> DiffusionBackend:
        """A backend around an already built ControlNet pipeline with its IP-Adapter loaded (benchmarks)."""
        backend = cls.__new__(cls)
        backend._setup(pipe, models, choose_device(device)[0], cpu_offload, vae_tiling)
        return backend

    def _setup(self, pipe, models: DiffusionModels, device: str, cpu_offload: bool, vae_tiling: bool) -> None:
        self.models = models
        self.device = device
        self.dtype = pipe.unet.dtype
        self.cpu_offload = cpu_offload and device.startswith("cuda")
        self.vae_tiling = vae_tiling
        self._lock = threading.Lock()
        self.pipe = pipe
        self._place(pipe)

    def _place(self, pipe) -> None:
        try:
            if self.cpu_offload:
                require_accelerate()
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe.to(self.device)
        except torch.OutOfMemoryError as error:
            raise StudioError(
                "The GPU does not have enough memory to hold the diffusion models; turn on --cpu-offload, "
                "or choose the lighter sd15 family."
            ) from error
        if self.device.startswith("cuda"):
            # Convolutions run faster on NHWC tensors with cuDNN in half precision.
            for module in (pipe.unet, pipe.controlnet, pipe.vae):
                module.to(memory_format=torch.channels_last)
        if self.vae_tiling:
            pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)

    def model_ids(self) -> dict[str, str]:
        """The models this backend runs, by field name (so `models_from(**ids)` rebuilds them)."""
        return {key: value for key, value in asdict(self.models).items() if value is not None}

    def generate(self, request: DiffusionRequest, progress: ProgressCallback | None = None,
                 should_cancel: Callable[[], bool] | None = None) -> list[Image.Image]:
        """One image per seed, request.width x request.height; GenerationCancelled if cancelled (no images)."""
        validate_request(request)
        with self._lock:
            if should_cancel is not None and should_cancel():
                raise GenerationCancelled()
            self.pipe.set_ip_adapter_scale(float(request.ip_adapter_scale))
            try:
                result = self.pipe(**self._call_arguments(request, progress, should_cancel))
            except StepCancelled:
                raise GenerationCancelled() from None
            except torch.OutOfMemoryError as error:
                raise self._out_of_memory(request) from error
            except RuntimeError as error:
                if "out of memory" in str(error).lower():
                    raise self._out_of_memory(request) from error
                raise
        return [image.convert("RGB") for image in result.images]

    def _call_arguments(self, request: DiffusionRequest, progress: ProgressCallback | None,
                        should_cancel: Callable[[], bool] | None) -> dict:
        # CPU generators: the same seed gives the same starting noise on any device.
        generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in request.seeds]
        return dict(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            image=rgb_on_white(request.pose_image),
            ip_adapter_image=rgb_on_white(request.garment_image),
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=float(request.guidance_scale),
            controlnet_conditioning_scale=float(request.controlnet_scale),
            num_images_per_prompt=len(request.seeds),
            generator=generators,
            output_type="pil",
            callback_on_step_end=step_callback(progress, should_cancel),
        )

    def _out_of_memory(self, request: DiffusionRequest) -> StudioError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return StudioError(OOM_MESSAGE.format(count=len(request.seeds), width=request.width, height=request.height))


def step_callback(progress: ProgressCallback | None, should_cancel: Callable[[], bool] | None):
    def on_step_end(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        # num_timesteps, not the requested steps: some schedulers (PNDM) run one extra step.
        total = max(1, int(getattr(pipe, "num_timesteps", 0) or 0))
        if progress is not None:
            progress(min(1.0, (step + 1) / total), f"Step {step + 1} of {total}")
        if should_cancel is not None and should_cancel():
            pipe._interrupt = True
            raise StepCancelled()
        return {}

    return on_step_end


def rgb_on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def choose_dtype(device: str) -> torch.dtype:
    """The weights' dtype on `device`."""
    if device.startswith("cuda"):
        # bf16 where the GPU has it: same speed as fp16, and the SDXL VAE does not overflow (no fp32 upcast).
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def require_accelerate() -> None:
    from diffusers.utils import is_accelerate_available

    if not is_accelerate_available():
        raise BackendUnavailableError("CPU offload needs the 'accelerate' package; install it or turn --cpu-offload off.")


def _require_peft() -> None:
    from diffusers.utils import is_peft_available

    if not is_peft_available():
        raise BackendUnavailableError("A few-step LoRA needs the 'peft' package; install it or leave the LoRA unset.")


# ---------------------------------------------------------------------------------------------- loading


def _build_pipeline(models: DiffusionModels, dtype: torch.dtype):
    """The family's ControlNet pipeline with the IP-Adapter (and LoRA) loaded, still on the CPU."""
    from diffusers import AutoPipelineForText2Image, ControlNetModel
    from transformers import CLIPVisionModelWithProjection

    controlnet = load_local_first("ControlNet", models.controlnet, lambda local: ControlNetModel.from_pretrained(
        models.controlnet, dtype=dtype, local_files_only=local))
    image_encoder = load_local_first("IP-Adapter image encoder", models.image_encoder,
                                     lambda local: CLIPVisionModelWithProjection.from_pretrained(
                                         models.image_encoder, subfolder=models.image_encoder_subfolder,
                                         dtype=dtype, local_files_only=local))
    # SD 1.5's safety checker is a second 1.2 GB CLIP that blacks out false positives on photos of people.
    extra = {"safety_checker": None, "requires_safety_checker": False} if models.family == "sd15" else {}
    pipe = load_local_first("base model", models.base_model, lambda local: AutoPipelineForText2Image.from_pretrained(
        models.base_model, controlnet=controlnet, image_encoder=image_encoder, dtype=dtype,
        local_files_only=local, **extra))
    _check_family(pipe, models)
    # image_encoder_folder=None: the encoder is already in the pipeline (it may live in another repo or folder).
    load_local_first("IP-Adapter", models.ip_adapter, lambda local: pipe.load_ip_adapter(
        models.ip_adapter, subfolder=models.ip_adapter_subfolder, weight_name=models.ip_adapter_weight_name,
        image_encoder_folder=None, local_files_only=local))
    if models.lora:
        fuse_lora(pipe, models)
    return pipe


def _check_family(pipe, models: DiffusionModels) -> None:
    base, controlnet = display_source(models.base_model), display_source(models.controlnet)
    is_xl = "XL" in type(pipe).__name__
    if is_xl != (models.family == "sdxl"):
        loaded = "an SDXL" if is_xl else "an SD 1.5"
        logger.warning("The base model %s is %s pipeline, not %s.", models.base_model, loaded, models.family)
        raise BackendUnavailableError(
            f"The base model '{base}' is {loaded} pipeline, but the family '{models.family}' was chosen; "
            "pick the matching family.")
    if pipe.controlnet.config.cross_attention_dim != pipe.unet.config.cross_attention_dim:
        logger.warning("The ControlNet %s does not fit the base model %s.", models.controlnet, models.base_model)
        raise BackendUnavailableError(
            f"The ControlNet '{controlnet}' was made for another model family than the base model "
            f"'{base}'; pick a {models.family} OpenPose ControlNet.")


def fuse_lora(pipe, models: DiffusionModels, trailing_timesteps: bool = True) -> None:
    """Load the few-step LoRA and fuse it into the weights. SDXL's (Lightning, Hyper-SD) were trained on trailing
    timesteps; flow-matching schedulers keep their own."""
    _require_peft()
    load_local_first("LoRA", models.lora, lambda local: pipe.load_lora_weights(
        models.lora, weight_name=models.lora_weight_name, local_files_only=local))
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # the fused weights stay; the adapter layers (and their overhead) go
    if trailing_timesteps:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing="trailing")


# ---------------------------------------------------------------------------------------------- shared instances

_BackendKey = tuple[DiffusionModels, str, bool, bool]
_backends: LoadedOnce[DiffusionBackend] = LoadedOnce("diffusion pipeline")


def load_diffusion_backend(models: DiffusionModels, device: str | None = None, cpu_offload: bool = False,
                           vae_tiling: bool = False) -> DiffusionBackend:
    """The process-wide backend for (models, device, flags): `DiffusionBackend` for sdxl and sd15, `EditBackend`
    for the multi-reference editing families; a failed load is remembered and raised again."""
    from pipeline.edit_diffusion import EDIT_FAMILIES, EditBackend

    device_name, _ = choose_device(device)
    key = (replace(models, family=parse_family(models.family)), device_name, bool(cpu_offload), bool(vae_tiling))
    backend_class = EditBackend if key[0].family in EDIT_FAMILIES else DiffusionBackend
    return _backends.get(key, lambda: backend_class(key[0], device_name, cpu_offload=key[2], vae_tiling=key[3]))


def forget_diffusion_backends() -> None:
    """Drop every loaded or failed backend (tests; or to retry after the network came back)."""
    _backends.clear()
