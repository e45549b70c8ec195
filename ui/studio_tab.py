"""The Studio tab, the seller's whole job on one page: add photos -> closet -> check the cut-out -> make photos ->
download. Phone first: one column, each step below the last; wider screens get more thumbnails per row."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext, garment_caption
from ui.photos import Photos, build_photos
from ui.review import Review, build_review
from web.errors import explained

CLOSET_SHOWN = 200
HINT = ("Photograph each garment flat on the floor or a bed, or on a hanger. Add as many as you like: each is cut "
        "out as soon as it arrives.")
PHOTO_TYPES = ["image", ".heic", ".heif"]


@dataclass
class StudioTab:
    garment_id: gr.State
    closet: gr.Gallery
    closet_ids: gr.State
    review: Review
    photos: Photos

    @property
    def garment_outputs(self) -> list:
        """Everything that follows the chosen garment."""
        return [*self.review.outputs, *self.photos.outputs]

    def show_garment(self, studio: Studio, chosen_id: str, markets: list[str] | None = None) -> tuple:
        return (*self.review.show(studio, chosen_id), *self.photos.show(studio, chosen_id, markets))


def closet_items(ctx: UIContext, studio: Studio) -> tuple[list[tuple[str, str]], list[str]]:
    garments = studio.list_garments(limit=CLOSET_SHOWN)
    items = [(str(studio.garment_thumbnail(g["id"])), garment_caption(g)) for g in garments]
    return items, [g["id"] for g in garments]


def build_studio_tab(ctx: UIContext, demo: gr.Blocks) -> StudioTab:
    gr.Markdown("### 1 · Add photos", elem_classes="step-title")
    add = gr.UploadButton("Add photos of your garments", file_count="multiple", file_types=PHOTO_TYPES,
                          variant="primary")
    add_note = gr.Markdown(elem_classes="quiet")  # filled when the page loads
    closet = gr.Gallery(label="Your closet", show_label=False, columns=4, height="auto", allow_preview=False,
                        format="jpeg", object_fit="contain", elem_id="closet", visible=False, fit_columns=False)
    garment_id, closet_ids = gr.State(""), gr.State([])
    review = build_review(ctx, garment_id)
    photos = build_photos(ctx, garment_id)
    tab = StudioTab(garment_id, closet, closet_ids, review, photos)

    def closet_view(studio: Studio, selected: str) -> tuple:
        items, ids = closet_items(ctx, studio)
        index = ids.index(selected) if selected in ids else None
        return gr.Gallery(value=items, selected_index=index, visible=bool(items)), ids

    def on_add(paths: list[str] | None, markets: list[str], request: gr.Request, progress=gr.Progress()):
        studio = ctx.studio_for(request)
        if not paths:
            gr.Warning("Choose one or more photos first.")
            return (gr.skip(),) * (4 + len(tab.garment_outputs))
        added, refused = [], []
        for number, path in enumerate(paths):
            progress(number / max(len(paths), 1), desc=f"Cutting out photo {number + 1} of {len(paths)}")
            result = studio.upload_garments([path])
            added += result["garments"]
            refused += result["refused"]
        for refusal in refused:
            gr.Warning(f"{refusal['filename']}: {refusal['error']}")
        if not added:  # the garment being checked stays open
            return (gr.skip(),) * 3 + ("No photo could be used; see the messages.",) + \
                (gr.skip(),) * len(tab.garment_outputs)
        chosen = added[0]["id"]
        note = (f"Added {len(added)} garment{'s' if len(added) != 1 else ''}. Your closet is below: tap a garment "
                "to check it.")
        return (*closet_view(studio, chosen), chosen, note, *tab.show_garment(studio, chosen, markets))

    def on_pick(ids: list[str], markets: list[str], event: gr.SelectData, request: gr.Request):
        studio = ctx.studio_for(request)
        chosen = ids[event.index] if event.index is not None and event.index < len(ids) else ""
        return chosen, *tab.show_garment(studio, chosen, markets)

    def on_refresh_closet(chosen_id: str, request: gr.Request):
        return closet_view(ctx.studio_for(request), chosen_id)

    def on_load(request: gr.Request):
        """The seller's marketplaces, and their closet with the newest garment open."""
        studio = ctx.studio_for(request)
        markets = studio.preferred_marketplaces()
        newest = studio.list_garments(limit=1)
        chosen = newest[0]["id"] if newest else ""
        return (*closet_view(studio, chosen), chosen, HINT, markets, markets[0] if markets else None,
                *tab.show_garment(studio, chosen, markets))

    ui = explained
    # The progress shows once, under the button, not over every panel the upload fills.
    add.upload(ui(on_add), [add, photos.marketplaces], [closet, closet_ids, garment_id, add_note, *tab.garment_outputs],
               show_progress_on=add_note, **PRIVATE)
    closet.select(ui(on_pick), [closet_ids, photos.marketplaces], [garment_id, *tab.garment_outputs], **PRIVATE)
    for event in [*review.edited, *photos.made]:
        event.then(ui(on_refresh_closet), garment_id, [closet, closet_ids], **PRIVATE)
    demo.load(ui(on_load), None, [closet, closet_ids, garment_id, add_note, photos.marketplaces,
                                  photos.zip_market, *tab.garment_outputs], **PRIVATE)
    return tab
