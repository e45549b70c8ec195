"""Tiny random multi-reference image-editing pipelines, built from configs and saved with `save_pretrained`.

Each builder writes a complete diffusers pipeline folder (model_index.json and one subfolder per component, as on
the Hub) that `from_pretrained` loads offline, and returns the folder. Weights are random but seeded, every
tokenizer is built here (no Hub files), and a folder is about 1 to 2 MB.

- `build_tiny_flux2_klein(folder)`: a `Flux2KleinPipeline` shaped like FLUX.2 [klein] 4B (step-distilled,
  `is_distilled=True`): Flux2Transformer2DModel, AutoencoderKLFlux2, a 27-layer Qwen3ForCausalLM text encoder (the
  pipeline stacks hidden states 9, 18 and 27 by default), a Qwen2 tokenizer with Qwen3's chat template, and a
  FlowMatchEulerDiscreteScheduler. Any size that is a multiple of 16 works (smaller is floored to 16)::

      pipe = Flux2KleinPipeline.from_pretrained(folder)
      pipe(image=[person, garment], prompt="...", height=64, width=64, num_inference_steps=2,
           guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="pil").images

- `build_tiny_qwen_edit(folder)`: a `QwenImageEditPlusPipeline` shaped like Qwen-Image-Edit-2511:
  QwenImageTransformer2DModel (`zero_cond_t=True`), AutoencoderKLQwenImage, a Qwen2_5_VLForConditionalGeneration
  text encoder with a 2-layer vision tower, a Qwen2 tokenizer and a Qwen2VLProcessor (PIL image processor, so no
  torchvision), and a FlowMatchEulerDiscreteScheduler. Sizes are multiples of 16::

      pipe = QwenImageEditPlusPipeline.from_pretrained(folder)
      pipe(image=[person, garment, pose], prompt="...", negative_prompt=" ", true_cfg_scale=4.0, height=64,
           width=64, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pil").images

  The pipeline resizes every reference image to about 1024 x 1024 for the VAE whatever its size (and to
  384 x 384 for the vision tower, which this processor then shrinks to 112 x 112), so each reference costs the
  same: about 0.5 s on two CPU cores.

Both tokenizers are byte-level BPE over the 256 byte symbols, with merges trained on the pipelines' fixed prompt
text, so the words of Qwen-Image-Edit's system prompt are one token each, as in the real tokenizer: the 64 tokens
that the pipeline drops (`prompt_template_encode_start_idx`) are exactly the system prefix.

Run this file to build both into a temporary folder, reload them offline and time one call each.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_SEED = 0
TEXT_WIDTH = 32  # hidden size of both text encoders

# Special tokens of the Qwen2 / Qwen2.5-VL / Qwen3 tokenizers that these pipelines use, in the Hub's order.
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN3_THINK_TOKENS = ("<think>", "</think>")  # added, not special, in Qwen3's tokenizer

# Fixed text of the prompts the two pipelines build; BPE merges are trained on it.
QWEN_EDIT_SYSTEM_PROMPT = (
    "Describe the key features of the input image (color, shape, size, texture, objects, background), then explain "
    "how the user's text instruction should alter or modify the image. Generate a new image that meets the user's "
    "requirements while maintaining consistency with the original input where appropriate.")
MERGE_CORPUS = ("system", "user", "assistant", "\n\n", "Picture 1: ", QWEN_EDIT_SYSTEM_PROMPT)

# Qwen3's chat template, cut down to what Flux2KleinPipeline renders: user turns and the empty thinking block
# that `enable_thinking=False` adds after the generation prompt.
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


# ---------------------------------------------------------------------------------------------- tokenizer

def tiny_qwen_tokenizer(chat_template: str | None = None):
    """A Qwen2Tokenizer (byte-level BPE, Qwen's pre-tokenizer and special tokens) of about 440 tokens.

    The vocabulary is the 256 byte symbols plus merges trained on MERGE_CORPUS: any text tokenizes, words the
    corpus lacks byte by byte.
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
    """Vocab and merges of a byte-level BPE trained on `corpus` until each of its words is one token."""
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


def _token_id(tokenizer, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


def _flow_match_scheduler(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, use_dynamic_shifting=True,
                                           time_shift_type="exponential", **config)


# ---------------------------------------------------------------------------------------------- FLUX.2 [klein]

FLUX2_TEXT_LAYERS = 27  # Flux2KleinPipeline stacks hidden_states[9], [18] and [27] unless told otherwise
FLUX2_LATENT_CHANNELS = 4


def _tiny_qwen3_text_encoder(tokenizer):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=FLUX2_TEXT_LAYERS, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=2048, tie_word_embeddings=True, rope_parameters={"rope_type": "default",
                                                                                 "rope_theta": 1000000.0},
        bos_token_id=None, eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"))
    return Qwen3ForCausalLM(config).eval()


def _tiny_flux2_vae():
    from diffusers import AutoencoderKLFlux2

    # Four blocks give the real 1/8 scale; the pipeline patchifies latents 2 x 2, so sizes are multiples of 16.
    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=FLUX2_LATENT_CHANNELS,
        norm_num_groups=8, sample_size=64)


def _tiny_flux2_transformer():
    from diffusers import Flux2Transformer2DModel

    # Klein: no guidance embedding; the text width is three stacked Qwen3 hidden states.
    return Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * FLUX2_LATENT_CHANNELS, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=3 * TEXT_WIDTH,
        timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False)


def build_tiny_flux2_klein(folder: Path, seed: int = TINY_SEED, distilled: bool = True) -> Path:
    """Save a tiny random Flux2KleinPipeline (klein 4B's layout; `distilled=False` for klein-base) to `folder`."""
    from diffusers import Flux2KleinPipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_qwen_tokenizer(QWEN3_CHAT_TEMPLATE)
    pipe = Flux2KleinPipeline(
        scheduler=_flow_match_scheduler(shift=3.0, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                        max_image_seq_len=4096),
        vae=_tiny_flux2_vae(), text_encoder=_tiny_qwen3_text_encoder(tokenizer), tokenizer=tokenizer,
        transformer=_tiny_flux2_transformer(), is_distilled=distilled)
    pipe.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- Qwen-Image-Edit

QWEN_LATENT_CHANNELS = 16  # the real z_dim; the VAE config's latents_mean / latents_std have one entry each
QWEN_VISION_PIXELS = 112 * 112  # the processor shrinks each 384 x 384 condition image to this (16 image tokens)


def _tiny_qwen_vl_text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = 16
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2, num_attention_heads=TEXT_WIDTH // head_dim, num_key_value_heads=1,
            max_position_embeddings=4096,
            # Multimodal RoPE: the (time, height, width) sections of the rotary half-dimension.
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=None, eos_token_id=_token_id(tokenizer, "<|im_end|>"),
            pad_token_id=_token_id(tokenizer, "<|endoftext|>")),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=TEXT_WIDTH, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
        image_token_id=_token_id(tokenizer, "<|image_pad|>"), video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"))
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def allow_qwen_processor_without_torchvision() -> None:
    """Let Qwen2VLProcessor be built and loaded without its video processor where torchvision is missing.

    transformers 5 requires the processor's video processor (Qwen2VLVideoProcessor), and that class needs
    torchvision, so without torchvision no Qwen2VLProcessor can be made or loaded, the Hub's included. Narrowing
    the processor's sub-processors to the image processor and the tokenizer is enough for images and text, all
    that QwenImageEditPlusPipeline uses. Call it before loading a tiny Qwen pipeline in a process of its own;
    without torchvision it changes the class for the whole process, and with torchvision it does nothing.
    """
    from transformers import Qwen2VLProcessor

    if torchvision_available():
        return
    Qwen2VLProcessor.get_attributes = classmethod(lambda cls: ["image_processor", "tokenizer"])


def _tiny_qwen_processor(tokenizer):
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    pixels = dict(min_pixels=56 * 56, max_pixels=QWEN_VISION_PIXELS)
    image_processor = Qwen2VLImageProcessorPil(**pixels, patch_size=14, temporal_patch_size=2, merge_size=2)
    if not torchvision_available():
        allow_qwen_processor_without_torchvision()
        return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor(**pixels))


def _tiny_qwen_vae():
    from diffusers import AutoencoderKLQwenImage

    # Three spatial downsamplings (1/8, as the real VAE); the latent statistics are the real defaults.
    return AutoencoderKLQwenImage(base_dim=8, z_dim=QWEN_LATENT_CHANNELS, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True, True])


def _tiny_qwen_transformer():
    from diffusers import QwenImageTransformer2DModel

    # 2511's layout: zero_cond_t gives the reference-image tokens timestep 0.
    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * QWEN_LATENT_CHANNELS, out_channels=QWEN_LATENT_CHANNELS, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, guidance_embeds=False,
        axes_dims_rope=(4, 6, 6), zero_cond_t=True)


def build_tiny_qwen_edit(folder: Path, seed: int = TINY_SEED) -> Path:
    """Save a tiny random QwenImageEditPlusPipeline (Qwen-Image-Edit-2511's layout) to `folder`."""
    from diffusers import QwenImageEditPlusPipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_qwen_tokenizer()
    pipe = QwenImageEditPlusPipeline(
        scheduler=_flow_match_scheduler(shift=1.0, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                        max_image_seq_len=8192, shift_terminal=0.02),
        vae=_tiny_qwen_vae(), text_encoder=_tiny_qwen_vl_text_encoder(tokenizer), tokenizer=tokenizer,
        processor=_tiny_qwen_processor(tokenizer), transformer=_tiny_qwen_transformer())
    pipe.save_pretrained(folder)
    return folder
