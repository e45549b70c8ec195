"""Tiny random multi-reference image-editing pipelines, built from configs and saved with `save_pretrained`.

Each builder writes a complete diffusers pipeline folder (model_index.json and one subfolder per component, as on
the Hub) that the pipeline class's `from_pretrained` loads offline, and returns the folder. Weights are random but
seeded; the tokenizers are built here, not downloaded.

- `build_tiny_flux2_klein(folder)` (about 1.7 MB): a `Flux2KleinPipeline` laid out like FLUX.2 [klein] 4B
  (`is_distilled=True`, so `guidance_scale` is ignored; `distilled=False` gives klein-base, where
  `guidance_scale > 1` runs classifier-free guidance): Flux2Transformer2DModel, AutoencoderKLFlux2, a 27-layer
  Qwen3ForCausalLM text encoder (the pipeline stacks its hidden states 9, 18 and 27), a Qwen2Tokenizer with
  Qwen3's chat template, and a FlowMatchEulerDiscreteScheduler. Sizes are floored to multiples of 16::

      pipe = Flux2KleinPipeline.from_pretrained(folder)
      images = pipe(image=[person, garment], prompt="...", height=64, width=64, num_inference_steps=2,
                    guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="pil").images

- `build_tiny_qwen_edit(folder)` (about 1.5 MB): a `QwenImageEditPlusPipeline` laid out like Qwen-Image-Edit-2511:
  QwenImageTransformer2DModel (`zero_cond_t=True`), AutoencoderKLQwenImage, a Qwen2_5_VLForConditionalGeneration
  text encoder with a 2-block vision tower, a Qwen2Tokenizer, a Qwen2VLProcessor and a
  FlowMatchEulerDiscreteScheduler. Sizes are floored to multiples of 16. Classifier-free guidance runs only with a
  `negative_prompt` and `true_cfg_scale > 1`::

      pipe = QwenImageEditPlusPipeline.from_pretrained(folder)
      images = pipe(image=[person, garment, pose], prompt="...", negative_prompt=" ", true_cfg_scale=4.0,
                    height=64, width=64, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    output_type="pil").images

  Two things to know. The pipeline resizes every reference image to about 1024 x 1024 for the VAE, whatever its
  size, and encoding that takes about 4 s per reference on two CPU cores however small the VAE is (a call with
  two references: about 10 s); `with qwen_vae_reference_area(64 * 64):` makes it about 1 s. And without
  torchvision, transformers can neither make nor load a Qwen2VLProcessor (its video processor needs torchvision):
  call `allow_qwen_processor_without_torchvision()` (pipeline/edit_diffusion.py; the studio's loader does) in a
  process before it loads a tiny Qwen pipeline.

Both tokenizers are byte-level BPE (the 256 byte symbols, Qwen's pre-tokenizer and special tokens) with merges
trained on the pipelines' fixed prompt text, so each word of Qwen-Image-Edit's system prompt is one token, as with
the real tokenizer: the first 64 tokens, which the pipeline drops (`prompt_template_encode_start_idx`), are
exactly the system prefix. Other words tokenize byte by byte.

Run this file to build both into a temporary folder, load each back offline in a fresh process and time its calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import torch

from pipeline.edit_diffusion import allow_qwen_processor_without_torchvision

TINY_SEED = 0
TEXT_WIDTH = 32  # hidden size of both text encoders
HEAD_DIM = 16  # of every attention layer here

# Special tokens of the Qwen2.5-VL / Qwen3 tokenizers that these pipelines use, in the Hub's order.
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN3_THINK_TOKENS = ("<think>", "</think>")  # added (not special) tokens of Qwen3's tokenizer

# The fixed text of the prompts both pipelines build; the BPE merges are trained on it.
QWEN_EDIT_SYSTEM_PROMPT = (
    "Describe the key features of the input image (color, shape, size, texture, objects, background), then explain "
    "how the user's text instruction should alter or modify the image. Generate a new image that meets the user's "
    "requirements while maintaining consistency with the original input where appropriate.")
MERGE_CORPUS = ("system", "user", "assistant", "\n\n", "Picture 1: ", QWEN_EDIT_SYSTEM_PROMPT)

# Qwen3's chat template cut down to what Flux2KleinPipeline renders: user turns, then the generation prompt with
# the empty thinking block that `enable_thinking=False` adds.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


# ---------------------------------------------------------------------------------------------- shared parts

def tiny_qwen_tokenizer(chat_template: str | None = None):
    """A Qwen2Tokenizer of 441 tokens: Qwen's special tokens, Qwen3's <think> and </think>, and `chat_template`.

    Flux2KleinPipeline needs QWEN3_CHAT_TEMPLATE; QwenImageEditPlusPipeline formats its prompt itself.
    """
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = _trained_byte_level_bpe(MERGE_CORPUS)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               model_max_length=32768)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(token, special=True) for token in QWEN_SPECIAL_TOKENS]})
    tokenizer.add_tokens([AddedToken(token, special=False) for token in QWEN3_THINK_TOKENS])
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def _trained_byte_level_bpe(corpus: tuple[str, ...]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocab and merges of a byte-level BPE trained on `corpus` until each of its words is one token."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def _special_ids(tokenizer) -> dict[str, int]:
    """The end-of-turn and padding ids, for a text config."""
    return dict(bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))


def _flow_match_scheduler(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, use_dynamic_shifting=True,
                                           time_shift_type="exponential", base_image_seq_len=256, **config)


# ---------------------------------------------------------------------------------------------- FLUX.2 [klein]

FLUX2_TEXT_LAYERS = 27  # Flux2KleinPipeline stacks hidden_states[9], [18] and [27] unless told otherwise
FLUX2_LATENT_CHANNELS = 4


def _tiny_qwen3_text_encoder(tokenizer):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=FLUX2_TEXT_LAYERS, num_attention_heads=TEXT_WIDTH // HEAD_DIM, num_key_value_heads=1,
        head_dim=HEAD_DIM, max_position_embeddings=2048, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **_special_ids(tokenizer))
    return Qwen3ForCausalLM(config).eval()


def _tiny_flux2_vae():
    from diffusers import AutoencoderKLFlux2

    # Four blocks: the real 1/8 scale; the pipeline packs latents 2 x 2, hence sizes in multiples of 16.
    return AutoencoderKLFlux2(block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                              latent_channels=FLUX2_LATENT_CHANNELS, norm_num_groups=8, sample_size=64)


def _tiny_flux2_transformer():
    from diffusers import Flux2Transformer2DModel

    # As klein: no guidance embedding; the text width is three stacked Qwen3 hidden states.
    return Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * FLUX2_LATENT_CHANNELS, num_layers=1, num_single_layers=1,
        attention_head_dim=HEAD_DIM, num_attention_heads=2, joint_attention_dim=3 * TEXT_WIDTH,
        timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False)


def build_tiny_flux2_klein(folder: Path, seed: int = TINY_SEED, distilled: bool = True) -> Path:
    """Save a tiny random Flux2KleinPipeline (klein 4B's layout; klein-base's with `distilled=False`) to `folder`."""
    from diffusers import Flux2KleinPipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_qwen_tokenizer(QWEN3_CHAT_TEMPLATE)
    pipe = Flux2KleinPipeline(
        scheduler=_flow_match_scheduler(shift=3.0, base_shift=0.5, max_shift=1.15, max_image_seq_len=4096),
        vae=_tiny_flux2_vae(), text_encoder=_tiny_qwen3_text_encoder(tokenizer), tokenizer=tokenizer,
        transformer=_tiny_flux2_transformer(), is_distilled=distilled)
    pipe.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- Qwen-Image-Edit

QWEN_LATENT_CHANNELS = 16  # the real z_dim: the VAE's default latents_mean / latents_std have 16 entries
QWEN_VISION_PIXELS = 112 * 112  # the processor shrinks each 384 x 384 condition image to this: 16 image tokens


@contextmanager
def qwen_vae_reference_area(pixels: int = 64 * 64) -> Iterator[None]:
    """Within the block, QwenImageEditPlusPipeline resizes references to about `pixels` for the VAE, not 1024 x 1024.

    Sides are rounded to multiples of 32, so 64 * 64 keeps a 64 x 64 reference as it is.
    """
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus

    with mock.patch.object(pipeline_qwenimage_edit_plus, "VAE_IMAGE_SIZE", pixels):
        yield


def _tiny_qwen_vl_text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    token_id = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2, num_attention_heads=TEXT_WIDTH // HEAD_DIM, num_key_value_heads=1,
            max_position_embeddings=4096,
            # Multimodal RoPE: the (time, height, width) split of the head's HEAD_DIM / 2 rotary frequencies.
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            **_special_ids(tokenizer)),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=TEXT_WIDTH, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
        image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"))
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _tiny_qwen_processor(tokenizer):
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor
    from transformers.utils import is_torchvision_available

    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": QWEN_VISION_PIXELS},
                                               patch_size=14, temporal_patch_size=2, merge_size=2)
    if not is_torchvision_available():
        allow_qwen_processor_without_torchvision()
        return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor())


def _tiny_qwen_vae():
    from diffusers import AutoencoderKLQwenImage

    # Three spatial halvings (the real 1/8 scale, so sizes in multiples of 16) and the real latent statistics.
    return AutoencoderKLQwenImage(base_dim=4, z_dim=QWEN_LATENT_CHANNELS, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True, True])


def _tiny_qwen_transformer():
    from diffusers import QwenImageTransformer2DModel

    # As 2511: zero_cond_t gives the reference-image tokens timestep 0.
    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * QWEN_LATENT_CHANNELS, out_channels=QWEN_LATENT_CHANNELS, num_layers=1,
        attention_head_dim=HEAD_DIM, num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, guidance_embeds=False,
        axes_dims_rope=(4, 6, 6), zero_cond_t=True)


def build_tiny_qwen_edit(folder: Path, seed: int = TINY_SEED) -> Path:
    """Save a tiny random QwenImageEditPlusPipeline (Qwen-Image-Edit-2511's layout) to `folder`."""
    from diffusers import QwenImageEditPlusPipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_qwen_tokenizer()
    pipe = QwenImageEditPlusPipeline(
        scheduler=_flow_match_scheduler(shift=1.0, base_shift=0.5, max_shift=0.9, max_image_seq_len=8192,
                                        shift_terminal=0.02),
        vae=_tiny_qwen_vae(), text_encoder=_tiny_qwen_vl_text_encoder(tokenizer), tokenizer=tokenizer,
        processor=_tiny_qwen_processor(tokenizer), transformer=_tiny_qwen_transformer())
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_flux2_klein_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FLUX.2 [klein] pipeline folder shared by the session (import into a test module or conftest)."""
    return build_tiny_flux2_klein(tmp_path_factory.mktemp("tiny-flux2-klein"))


@pytest.fixture(scope="session")
def tiny_qwen_edit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen-Image-Edit pipeline folder shared by the session; its processor loads without torchvision."""
    allow_qwen_processor_without_torchvision()
    return build_tiny_qwen_edit(tmp_path_factory.mktemp("tiny-qwen-edit"))


# ---------------------------------------------------------------------------------------------- self-check

def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _timed_call(pipe, arguments: dict) -> str:
    import time

    start = time.perf_counter()
    images = pipe(**arguments, generator=torch.Generator().manual_seed(0)).images
    return f"{[image.size for image in images]} in {time.perf_counter() - start:.1f} s"


def _call_twice(family: str, folder: Path) -> None:
    """Load `folder` (the caller sets HF_HUB_OFFLINE=1) and time two 2-step calls with two references."""
    import diffusers
    from PIL import Image

    allow_qwen_processor_without_torchvision()
    pipeline_class = {"flux2": diffusers.Flux2KleinPipeline, "qwen": diffusers.QwenImageEditPlusPipeline}[family]
    pipe = pipeline_class.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    references = [Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")]
    arguments = dict(image=references, prompt="dress the person in the garment", height=64, width=64,
                     num_inference_steps=2, output_type="pil")
    if family == "qwen":
        arguments.update(negative_prompt=" ", true_cfg_scale=4.0)
    else:
        arguments.update(guidance_scale=1.0)
    print(f"{family}: first call {_timed_call(pipe, arguments)}, second {_timed_call(pipe, arguments)}")
    if family == "qwen":
        with qwen_vae_reference_area(64 * 64):
            print(f"{family} with 64 x 64 VAE references: {_timed_call(pipe, arguments)}")


def main() -> None:
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tiny-edit-") as root:
        for family, build in (("flux2", build_tiny_flux2_klein), ("qwen", build_tiny_qwen_edit)):
            folder = build(Path(root) / family)
            print(f"{family}: {folder} {_folder_size(folder) / 1e6:.2f} MB")
            subprocess.run([sys.executable, __file__, family, str(folder)], check=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3:
        _call_twice(sys.argv[1], Path(sys.argv[2]))
    else:
        main()
