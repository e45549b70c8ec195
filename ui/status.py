"""Studio status, for whoever runs the studio: which backends and models are active and why something is not.
Collapsed at the bottom of the page; a seller never needs it."""

from __future__ import annotations

import html

import gradio as gr

from pipeline.studio import Studio


def status_markdown(studio: Studio) -> str:
    status = studio.backend_status()
    lines = [f"- {status['segmentation']}", f"- {status['category']}", f"- {status['generation']}"]
    reasons: dict[str, list[str]] = {}
    for model in studio.virtual_models():
        if not model["available"]:
            reasons.setdefault(model["unavailable_reason"] or "no reason given", []).append(model["name"])
    for reason, names in reasons.items():
        lines.append(f"- Unavailable here ({html.escape(', '.join(names))}): {html.escape(reason)}")
    lines.append("- On-model photos need a GPU and the diffusion weights: see the README's *On-model photos* "
                 "section (`--base-model`, `--controlnet`, `--ip-adapter`, or the Space's preloaded models).")
    return "\n".join(lines)


def build_status(studio: Studio) -> None:
    with gr.Accordion("Studio status (for whoever runs the studio)", open=False):
        gr.Markdown(status_markdown(studio), elem_classes="quiet")
