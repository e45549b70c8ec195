"""What every screen shares: who is calling, the files handed to Gradio, captions, and the page's CSS."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from pipeline.category_model import CONFIDENT_FROM
from pipeline.presets import MARKETPLACES
from pipeline.studio import Studio
from web.access import Access
from web.served_files import ServedFiles

PRIVATE = {"api_visibility": "private"}  # UI events are not API endpoints; the API has its own (web/api.py)
POLL_SECONDS = 0.2

CSS = """
.gradio-container {max-width: 1100px !important; margin: 0 auto;}
.tagline p {color: var(--body-text-color-subdued); margin-top: -6px;}
.step-title h3 {margin: 6px 0 0;}
.chips .wrap {gap: 6px;}
.chips label {border-radius: 999px !important; padding: 4px 14px !important;}
.check-me {color: #b45309; font-weight: 600;}
.quiet p, .quiet li {font-size: 0.9em; color: var(--body-text-color-subdued);}
.danger {border: 1px solid #fca5a5; border-radius: 10px; padding: 8px;}
.grid-wrap {max-height: none; min-height: 0 !important; height: auto !important;}
.caption-label {font-size: 0.8em;}
.toast-body {background: #ffffff !important; opacity: 1 !important;}  /* messages never see-through */
.dark .toast-body {background: #111827 !important;}
#results .gallery-container:has(.preview) {min-height: min(75vh, 560px);}  /* a tapped photo shows large, */
#results .gallery-container:has(.preview) .grid-wrap {visibility: hidden;}  /* not over a blur of the grid */
@media (max-width: 640px) {
  .gradio-container {padding: 6px !important;}
  h1 {font-size: 1.4em !important;}
  .grid-container {grid-template-columns: repeat(3, minmax(0, 1fr)) !important;}
  .thumbnail-item .caption-label {white-space: normal; left: 3px; right: 3px; max-width: none; line-height: 1.2;
                                  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;}
}
"""


@dataclass
class UIContext:
    """What a screen's handlers need: the studio (acting for whoever calls) and the files handed to Gradio."""

    studio: Studio
    access: Access
    served: ServedFiles

    def studio_for(self, request: gr.Request) -> Studio:
        return self.access.studio_for(request)


def category_is_uncertain(garment: dict) -> bool:
    if garment.get("category_source") == "user" or not garment.get("category"):
        return False
    confidence = garment.get("category_confidence")
    return confidence is None or confidence < CONFIDENT_FROM


def category_question(garment: dict) -> str:
    """What the page asks when the category is uncertain: "Is this a dress or a top?"; "Category" otherwise."""
    if not category_is_uncertain(garment):
        return "Category"
    alternative = garment.get("category_alternative")
    options = f"{with_article(garment['category'])} or {with_article(alternative)}" if alternative else \
        with_article(garment["category"])
    return f"Is this {options}?"


def with_article(category: str) -> str:
    """How the page names a category in a sentence: "a top", "outerwear (a coat or jacket)"."""
    return {"top": "a top", "bottom": "a bottom (trousers, skirt, shorts)", "dress": "a dress",
            "outerwear": "outerwear (a coat or jacket)"}.get(category, category)


def garment_caption(garment: dict) -> str:
    """One line under a closet thumbnail: category and colour, or what went wrong."""
    if garment["status"] == "failed":
        return "⚠ cut-out failed: tap to fix"
    uncertain = category_is_uncertain(garment)  # the review asks which; the cue comes first, as a phone's
    if garment.get("title"):                     # narrow tile cuts the end of a long caption
        return f"{garment['category']}? · {garment['title']}" if uncertain else garment["title"]
    category = (garment.get("category") or "garment").capitalize()
    return f"{category}{'?' if uncertain else ''} · {garment.get('detected_color') or 'colour?'}"


def output_caption(output: dict) -> str:
    star = "★ " if output["is_favorite"] else ""
    where = MARKETPLACES[output["marketplace"]].name if output["marketplace"] else output["aspect_ratio"]
    enlarged = output.get("enlargement")
    notes = [f"enlarged {enlarged:.1f}×" if enlarged and enlarged > 1.25 else "",
             "⚠ colour may differ from the item" if output.get("fidelity_flagged") else "",
             "⚠ pattern may differ from the item" if output.get("pattern_flagged") else ""]
    return " · ".join(filter(None, [f"{star}{where}", f"{output['width']}×{output['height']}", *notes]))


def output_items(studio: Studio, outputs: list[dict]) -> list[tuple[str, str]]:
    return [(str(studio.file_path(output["image_url"])), output_caption(output)) for output in outputs]


def wait_for_job(studio: Studio, generation_id: str, progress: gr.Progress, number: int, total: int,
                 label: str = "") -> dict:
    """Polls a job to its end, moving the page's progress bar."""
    while True:
        job = studio.get_generation(generation_id)
        if job["status"] in ("completed", "failed"):
            return job
        progress((number + job["progress"]) / total, desc=f"{label}{job['progress_message']} ({number + 1}/{total})")
        time.sleep(POLL_SECONDS)


def when(date_text: str) -> str:
    """'27 Nov 16:48' from an ISO timestamp."""
    try:
        return time.strftime("%d %b %H:%M", time.strptime(date_text[:16], "%Y-%m-%dT%H:%M"))
    except ValueError:
        return date_text[:16]

