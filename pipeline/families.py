"""The on-model model families, in one torch-free place (the command line lists them without loading torch)."""

from __future__ import annotations

from pipeline.errors import InputError

FAMILIES = ("sdxl", "sd15", "flux2-klein", "qwen-edit")
FAMILY_ALIASES = {"sd1.5": "sd15", "sd-1.5": "sd15", "sd_15": "sd15", "sd-xl": "sdxl", "flux2": "flux2-klein",
                  "klein": "flux2-klein", "flux.2-klein": "flux2-klein", "qwen": "qwen-edit",
                  "qwen-image-edit": "qwen-edit"}


def parse_family(family: str) -> str:
    name = (family or "").strip().lower()
    name = FAMILY_ALIASES.get(name, name)
    if name not in FAMILIES:
        raise InputError(f"Unknown model family {family!r}; choose one of {', '.join(FAMILIES)}.")
    return name
