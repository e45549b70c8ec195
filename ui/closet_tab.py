"""The Closet tab: every garment as a thumbnail (filter by category and date), the starred photos of every job,
and deleting a garment, away from the everyday buttons and with a confirmation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import gradio as gr

from pipeline.attributes import CATEGORIES
from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext, garment_caption, output_items, when
from ui.studio_tab import StudioTab, closet_items
from web.api import delete_garment
from web.errors import explained

ANY = "any"
PERIODS = {"any time": None, "today": 1, "this week": 7, "this month": 31}


def build_closet_tab(ctx: UIContext, tab: gr.Tab, tabs: gr.Tabs, studio_tab: StudioTab) -> None:
    with gr.Row():
        category = gr.Dropdown([ANY, *CATEGORIES], value=ANY, label="Category", min_width=120)
        period = gr.Dropdown(list(PERIODS), value="any time", label="Added", min_width=120)
    gr.Markdown("Tap a garment to open it in the Studio.", elem_classes="quiet")
    garments = gr.Gallery(label="Garments", show_label=False, columns=4, height="auto",
                          allow_preview=False, format="jpeg", object_fit="contain", fit_columns=False,
                          elem_id="closet-all")
    shown_ids = gr.State([])
    gr.Markdown("### Favourites", elem_classes="step-title")
    gr.Markdown("Starred photos, from every job.", elem_classes="quiet")
    favorites = gr.Gallery(label="Favourites", show_label=False, columns=4, height="auto", format="jpeg",
                           fit_columns=False, elem_id="favourites")
    with gr.Accordion("Delete a garment", open=False, elem_classes="danger"):
        gr.Markdown("Deleting a garment removes its photo, cut-out and every photo made of it, for good.",
                    elem_classes="quiet")
        doomed = gr.Dropdown(label="Garment to delete", choices=[])
        ask = gr.Button("Delete this garment…", variant="stop", size="sm")
        confirm = gr.Button("Yes, delete it for good", variant="stop", visible=False)

    def filtered(studio: Studio, chosen_category: str, chosen_period: str) -> list[dict]:
        days = PERIODS.get(chosen_period)
        since = (datetime.now(timezone.utc) - timedelta(days=days)).date().isoformat() if days else None
        return studio.list_garments(limit=200, category=None if chosen_category == ANY else chosen_category,
                                    since=since)

    def on_show(chosen_category: str, chosen_period: str, request: gr.Request):
        studio = ctx.studio_for(request)
        listed = filtered(studio, chosen_category, chosen_period)
        items = [(str(studio.garment_thumbnail(g["id"])), garment_caption(g)) for g in listed]  # dates: the filter
        favourite_outputs = studio.list_favorites(limit=100)
        choices = [(f"{garment_caption(g)} · {when(g['created_at'])}", g["id"]) for g in
                   studio.list_garments(limit=200)]
        return (items, [g["id"] for g in listed], output_items(studio, favourite_outputs),
                gr.Dropdown(choices=choices, value=None), gr.Button(visible=False))

    def on_open(ids: list[str], markets: list[str], event: gr.SelectData, request: gr.Request):
        studio = ctx.studio_for(request)
        chosen = ids[event.index] if event.index is not None and event.index < len(ids) else ""
        return (chosen, gr.Tabs(selected="studio"), *studio_tab.show_garment(studio, chosen, markets))

    def on_ask(chosen: str):
        if not chosen:
            raise gr.Error("Choose the garment to delete first.")
        return gr.Button(visible=True)

    def on_confirm(chosen: str, chosen_category: str, chosen_period: str, request: gr.Request):
        studio = ctx.studio_for(request)
        delete_garment(studio, ctx.served, chosen)
        gr.Info("The garment and its photos were deleted.")
        return on_show(chosen_category, chosen_period, request)

    ui = explained
    listing = [garments, shown_ids, favorites, doomed, confirm]
    for trigger in (tab.select, category.input, period.input):
        trigger(ui(on_show), [category, period], listing, **PRIVATE)
    garments.select(ui(on_open), [shown_ids, studio_tab.photos.marketplaces],
                    [studio_tab.garment_id, tabs, *studio_tab.garment_outputs], **PRIVATE)
    ask.click(ui(on_ask), doomed, confirm, **PRIVATE)
    doomed.input(lambda: gr.Button(visible=False), None, confirm, **PRIVATE)
    def on_studio_after_delete(request: gr.Request):
        """The Studio tab's closet without the deleted garment, with the newest garment open."""
        studio = ctx.studio_for(request)
        items, ids = closet_items(ctx, studio)
        chosen = ids[0] if ids else ""
        return (gr.Gallery(value=items, selected_index=0 if ids else None, visible=bool(items)), ids, chosen,
                *studio_tab.show_garment(studio, chosen, studio.preferred_marketplaces()))

    confirm.click(ui(on_confirm), [doomed, category, period], listing, **PRIVATE).then(
        ui(on_studio_after_delete), None,
        [studio_tab.closet, studio_tab.closet_ids, studio_tab.garment_id, *studio_tab.garment_outputs], **PRIVATE)
