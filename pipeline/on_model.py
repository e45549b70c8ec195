"""On-model photos: a virtual model wearing the garment, through the diffusion backend.

`plan_on_model` turns a model card, the garment's category and colour and the user's options into every value
the pipeline gets (so a run can be repeated from what is stored); `render_on_model` runs it and returns one
output per generated image and requested shape, each with its seed and garment-fidelity score.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from pipeline.category_model import garment_on_white
from pipeline.crops import crop_enlargement, crop_to_shape, points_box
from pipeline.diffusion import DiffusionBackend, DiffusionRequest, validate_request
from pipeline.edit_diffusion import EDIT_FAMILIES, TAKES_POSE_IMAGE
from pipeline.errors import InputError
from pipeline.fidelity import (
    FidelityScore,
    PatternScore,
    fidelity_score,
    garment_pattern,
    garment_region,
    pattern_score,
)
from pipeline.pattern import PatternFeatures
from pipeline.generation import OutputSpec, RenderedOutput
from pipeline.model_cards import ModelCard
from pipeline.poses import POSE_ASPECT, choose_pose, keypoints_to_pixels, render_pose
from pipeline.presets import ratio_size
from pipeline.prompts import build_edit_prompt, build_prompt, persona_photo_prompt, volume_ghost_prompt

# Portrait sizes each family was trained near (about 1 MP for SDXL and the edit models); the full body fits, and
# crops are cut from them.
FAMILY_SIZES = {"sdxl": (896, 1152), "sd15": (768, 1024), "flux2-klein": (896, 1152), "qwen-edit": (896, 1152)}
# FLUX.2 [klein] 4B is step-distilled: 4 steps is its own setting, and guidance is built in.
DEFAULT_STEPS = {"sdxl": 30, "sd15": 30, "flux2-klein": 4, "qwen-edit": 40}
FEW_STEPS = 8  # with a few-step LoRA (SDXL-Lightning, Hyper-SD, Qwen-Image-Lightning)
DEFAULT_GUIDANCE = {"sdxl": 5.0, "sd15": 7.0, "flux2-klein": 1.0, "qwen-edit": 4.0}
FEW_STEP_GUIDANCE = {"sdxl": 1.5, "sd15": 1.5, "flux2-klein": 1.0, "qwen-edit": 1.0}
MAX_BATCH = 4
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class OnModelOptions:
    """What a seller or an ML engineer may set; empty or None means "the card's / family's default"."""

    prompt: str = ""
    negative_prompt: str = ""
    batch_size: int = 1
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    ip_adapter_scale: float = 0.7
    controlnet_scale: float = 0.8
    width: int | None = None
    height: int | None = None
    pose: str = ""


def on_model_options(prompt: str = "", negative_prompt: str = "", batch_size: int = 1, seed: int = -1,
                     steps: int = 0, guidance_scale: float = -1.0, ip_adapter_scale: float = 0.7,
                     controlnet_scale: float = 0.8, width: int = 0, height: int = 0, pose: str = "") -> OnModelOptions:
    """The API's and the panel's plain values as options: empty, -1 and 0 mean "the default"."""
    try:
        return OnModelOptions(
            prompt=prompt or "", negative_prompt=negative_prompt or "", batch_size=int(batch_size or 1),
            seed=int(seed) if seed is not None and int(seed) >= 0 else None, steps=int(steps or 0) or None,
            guidance_scale=float(guidance_scale) if guidance_scale is not None and float(guidance_scale) >= 0 else None,
            ip_adapter_scale=float(ip_adapter_scale), controlnet_scale=float(controlnet_scale),
            width=int(width or 0) or None, height=int(height or 0) or None, pose=pose or "")
    except (TypeError, ValueError, OverflowError) as error:
        raise InputError(f"A diffusion parameter is not a number: {error}.") from None


@dataclass(frozen=True)
class OnModelPlan:
    """Exactly what the pipeline receives; stored with the generation so it can be re-run."""

    prompt: str
    negative_prompt: str
    pose: str
    seeds: list[int]
    steps: int
    guidance_scale: float
    ip_adapter_scale: float
    controlnet_scale: float
    width: int
    height: int
    keypoints: list = field(default_factory=list)

    def parameters(self) -> dict:
        return asdict(self)


VOLUME_GHOST_SIZE = (1024, 1024)  # a product shot: square, about 1 MP


def plan_on_model(card: ModelCard, category: str, color_name: str, options: OnModelOptions, family: str,
                  few_step: bool = False) -> OnModelPlan:
    if not 1 <= options.batch_size <= MAX_BATCH:
        raise InputError(f"Batch size must be between 1 and {MAX_BATCH}, not {options.batch_size}.")
    if card.is_volume_ghost:
        return _plan_volume_ghost(category, color_name, options, family, few_step)
    pose = choose_pose(card, category, options.pose or None)
    if family in EDIT_FAMILIES:
        prompt, negative = build_edit_prompt(card, category, color_name or "", pose,
                                             with_pose_image=TAKES_POSE_IMAGE[family])
    else:
        prompt, negative = build_prompt(card, category, color_name or "", pose)
    width, height = FAMILY_SIZES[family]
    base_seed = options.seed if options.seed is not None and options.seed >= 0 else random.randint(0, MAX_SEED)
    steps = options.steps or (FEW_STEPS if few_step else DEFAULT_STEPS[family])
    guidance = options.guidance_scale if options.guidance_scale is not None else (
        FEW_STEP_GUIDANCE[family] if few_step else DEFAULT_GUIDANCE[family])
    return OnModelPlan(
        prompt=options.prompt.strip() or prompt,
        negative_prompt=options.negative_prompt.strip() or negative,
        pose=pose.name,
        seeds=[(base_seed + index) % (MAX_SEED + 1) for index in range(options.batch_size)],
        steps=steps, guidance_scale=guidance,
        ip_adapter_scale=options.ip_adapter_scale, controlnet_scale=options.controlnet_scale,
        width=options.width or width, height=options.height or height,
        keypoints=[list(point) if point is not None else None for point in pose.keypoints],
    )


def _plan_volume_ghost(category: str, color_name: str, options: OnModelOptions, family: str,
                       few_step: bool) -> OnModelPlan:
    if family not in EDIT_FAMILIES:
        raise InputError(f"The 3D ghost needs an image-editing family ({' or '.join(EDIT_FAMILIES)}), not {family}.")
    prompt, negative = volume_ghost_prompt(category, color_name or "")
    width, height = VOLUME_GHOST_SIZE
    base_seed = options.seed if options.seed is not None and options.seed >= 0 else random.randint(0, MAX_SEED)
    return OnModelPlan(
        prompt=options.prompt.strip() or prompt, negative_prompt=options.negative_prompt.strip() or negative,
        pose="", seeds=[(base_seed + index) % (MAX_SEED + 1) for index in range(options.batch_size)],
        steps=options.steps or (FEW_STEPS if few_step else DEFAULT_STEPS[family]),
        guidance_scale=options.guidance_scale if options.guidance_scale is not None else (
            FEW_STEP_GUIDANCE[family] if few_step else DEFAULT_GUIDANCE[family]),
        ip_adapter_scale=options.ip_adapter_scale, controlnet_scale=options.controlnet_scale,
        width=options.width or width, height=options.height or height, keypoints=[])


@dataclass(frozen=True)
class PersonaPhotoPlan:
    """What a persona's reference photo is made from: the card's person in a neutral outfit, full body, plain
    studio light, at the family's size, from a fixed seed (the same card and family give the same person)."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int


def plan_persona_photo(card: ModelCard, family: str, few_step: bool = False, seed: int | None = None) -> PersonaPhotoPlan:
    """The reference photo plan for `card` in an editing family; `seed` None is the card's own fixed seed."""
    prompt, negative = persona_photo_prompt(card)
    width, height = FAMILY_SIZES[family]
    return PersonaPhotoPlan(
        prompt=prompt, negative_prompt=negative, width=width, height=height,
        steps=FEW_STEPS if few_step else DEFAULT_STEPS[family],
        guidance_scale=FEW_STEP_GUIDANCE[family] if few_step else DEFAULT_GUIDANCE[family],
        seed=zlib.crc32(card.id.encode()) % (MAX_SEED + 1) if seed is None else seed)


def diffusion_request(plan: OnModelPlan, image: Image.Image, mask: np.ndarray,
                      person_image: Image.Image | None = None) -> DiffusionRequest:
    request = DiffusionRequest(
        prompt=plan.prompt, negative_prompt=plan.negative_prompt,
        garment_image=garment_on_white(image, mask),
        pose_image=(render_pose(plan.keypoints, plan.width, plan.height, aspect=POSE_ASPECT) if plan.keypoints
                    else Image.new("RGB", (plan.width, plan.height), "black")),  # the 3D ghost has no pose
        width=plan.width, height=plan.height, steps=plan.steps, guidance_scale=plan.guidance_scale,
        ip_adapter_scale=plan.ip_adapter_scale, controlnet_scale=plan.controlnet_scale, seeds=list(plan.seeds),
        person_image=person_image, with_pose=bool(plan.pose),
    )
    validate_request(request)
    return request


def render_on_model(backend: DiffusionBackend, plan: OnModelPlan, image: Image.Image, mask: np.ndarray,
                    specs: Sequence[OutputSpec], category: str, garment_hex: str | None,
                    progress: Callable[[float, str], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None,
                    person_image: Image.Image | None = None) -> list[RenderedOutput]:
    generated = backend.generate(diffusion_request(plan, image, mask, person_image), progress, should_cancel)
    pixels = keypoints_to_pixels(plan.keypoints, plan.width, plan.height, POSE_ASPECT) if plan.keypoints else []
    focus = points_box(pixels)
    garment_features = garment_pattern(image, mask)
    outputs = []
    for index, (picture, seed) in enumerate(zip(generated, plan.seeds)):
        colour, pattern = _fidelity(picture, category, plan.keypoints or None, garment_hex, garment_features)
        for spec in specs:
            size = (spec.width, spec.height) if spec.width else _window_size(picture.size, spec.aspect_ratio)
            enlargement = max(1.0, crop_enlargement(picture.size, spec.aspect_ratio, size))
            outputs.append(RenderedOutput(spec=spec, image=crop_to_shape(picture, spec.aspect_ratio, size, focus),
                                          image_index=index, seed=seed, ai_generated=True, fidelity=colour,
                                          pattern=pattern, enlargement=enlargement))
    return outputs


def _window_size(size: tuple[int, int], aspect_ratio: str) -> tuple[int, int]:
    """A plain aspect-ratio crop keeps the generated pixels as they are: no enlarging."""
    width, height = size
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    window_w = min(width, height * ratio_w // ratio_h)
    return ratio_size(aspect_ratio, max(window_w, window_w * ratio_h // ratio_w))


def _fidelity(picture: Image.Image, category: str, keypoints: list | None, garment_hex: str | None,
              garment_features: PatternFeatures) -> tuple[FidelityScore | None, PatternScore | None]:
    """The output's colour and pattern scores against the garment's; None where they cannot be measured."""
    try:
        region = garment_region(picture, category, keypoints, pose_aspect=POSE_ASPECT)
    except InputError:
        return None, None
    colour = pattern = None
    try:
        colour = fidelity_score(garment_hex, picture, region) if garment_hex else None
        pattern = pattern_score(garment_features, picture, region)
    except InputError:
        pass
    return colour, pattern
