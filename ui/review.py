"""Review one garment: its cut-out as it will be used, taps to fix it, and what its listing will say: the title,
category, colours and pattern, each editable."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
import numpy as np

from pipeline.attributes import CATEGORIES
from pipeline.listing import MAX_TITLE_LENGTH
from pipeline.pattern import PATTERNS
from pipeline.cutout import stray_regions
from pipeline.errors import StudioError
from pipeline.previews import cutout_preview, preview_scale, thumbnail
from pipeline.segmentation import backend_label
from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext, category_is_uncertain, category_question, with_article
from web.errors import explained

CUTOUT_VIEW, PHOTO_VIEW = "Cut-out", "Photo"
# The garment's column behind each editable field.
STORED = {"title": "title", "category": "category", "color_name": "detected_color", "color_hex": "detected_color_hex",
          "secondary_color": "secondary_color", "pattern": "pattern"}
ADD, REMOVE = "Add to garment", "Remove"
CONFIRMATION_SECONDS = 4  # a confirmation toast covers the top of a phone's screen: gone before the next tap


@dataclass
class Review:
    section: gr.Column
    view: gr.Radio
    picture: gr.Image
    note: gr.Markdown
    clicks: gr.State
    category: gr.Radio
    color_name: gr.Textbox
    color_hex: gr.ColorPicker
    secondary_color: gr.Textbox
    pattern: gr.Radio
    title: gr.Textbox
    confirm: gr.Button
    show: Callable[..., tuple] = lambda *args: ()  # (studio, garment_id) -> the values of `outputs`
    edited: list = field(default_factory=list)  # events after which the garment's caption may have changed

    @property
    def outputs(self) -> list:
        """What `show` fills, in its order."""
        return [self.section, self.view, self.picture, self.note, self.clicks, *self.attributes]

    @property
    def attributes(self) -> list:
        """The listing fields, in the order of `attribute_values`."""
        return [self.title, self.category, self.confirm, self.color_name, self.color_hex, self.secondary_color,
                self.pattern]


def shown_mask(studio: Studio, chosen_id: str, points: list) -> Callable[[], np.ndarray]:
    """The cut-out the page shows (what the taps would give, or the stored one), computed at its first use only:
    the picture and its note share it, since refining a big photo takes a while."""
    def compute() -> np.ndarray:
        return studio.preview_refinement(chosen_id, points).mask if points else studio.garment_mask(chosen_id)
    return functools.cache(compute)


def build_review(ctx: UIContext, garment_id: gr.State) -> Review:
    with gr.Column(visible=False) as section:
        gr.Markdown("### 2 · Check the cut-out", elem_classes="step-title")
        with gr.Row():  # side by side on a wide screen, one below the other on a phone
            with gr.Column(min_width=320):
                view = gr.Radio([CUTOUT_VIEW, PHOTO_VIEW], value=CUTOUT_VIEW, show_label=False, container=False)
                picture = gr.Image(label="The cut-out", show_label=False, interactive=False, format="jpeg",
                                   height=380, buttons=["fullscreen"], elem_id="cutout")
            with gr.Column(min_width=320):
                note = gr.Markdown()
                # Before the tap tools, so that on a phone the question the studio asks when it is unsure comes
                # right after the picture and its note.
                category = gr.Radio(list(CATEGORIES), label="Category", elem_classes="chips", elem_id="category")
                confirm = gr.Button(visible=False, size="sm", elem_id="confirm-category")
                mode = gr.Radio([ADD, REMOVE], value=REMOVE, label="A tap", elem_classes="chips")
                with gr.Row():
                    undo = gr.Button("Undo", size="sm", min_width=80)
                    reset = gr.Button("Reset to automatic", size="sm", min_width=140)
                    save_cutout = gr.Button("Save cut-out", size="sm", variant="primary", min_width=100)
                title = gr.Textbox(label="Listing title", max_length=MAX_TITLE_LENGTH, elem_id="listing-title",
                                   info="Suggested from what we see; type your own and it stays.")
                with gr.Row(equal_height=True):
                    color_name = gr.Textbox(label="Colour", scale=3, min_width=120)
                    color_hex = gr.ColorPicker(label="Shade", scale=1, min_width=70)
                    secondary_color = gr.Textbox(label="Second colour", placeholder="none", scale=3, min_width=120)
                pattern = gr.Radio(list(PATTERNS), label="Pattern", elem_classes="chips")
    clicks = gr.State([])
    review = Review(section, view, picture, note, clicks, category, color_name, color_hex, secondary_color, pattern,
                    title, confirm)

    def picture_of(studio: Studio, chosen_id: str, shown: str, points: list,
                   mask: Callable[[], np.ndarray]) -> str | None:
        garment = studio.get_garment(chosen_id)
        image = studio.garment_image(chosen_id)
        if shown == PHOTO_VIEW or not garment["mask_image_url"]:
            return ctx.served.preview(studio.owner_id, chosen_id, thumbnail(image), "photo")
        return ctx.served.preview(studio.owner_id, chosen_id, cutout_preview(image, mask(), points=points), "cut-out")

    def note_for(studio: Studio, chosen_id: str, points: list, mask: Callable[[], np.ndarray]) -> str:
        garment = studio.get_garment(chosen_id)
        if garment["status"] == "failed":
            return f"**The cut-out failed:** {garment['error_message']} Tap the garment in *{ADD}* mode."
        strays = len(stray_regions(mask()))
        lines = [f"⚠ **{strays} loose piece{'s' if strays > 1 else ''}** boxed in magenta: tap {'them' if strays > 1 else 'it'}"
                 f" in *{REMOVE}* mode if not part of the garment." if strays else
                 "What you see is what goes in your photos. Tap the picture to add or remove a part."]
        missed = taps_that_added_nothing(mask(), points)
        if missed:
            lines.append(f"{missed} tap{'s' if missed > 1 else ''} in *{ADD}* mode found no part joined to the "
                         "garment there. Tap where the missing part meets the garment.")
        if points:
            lines.append(f"{len(points)} tap{'s' if len(points) > 1 else ''} not saved yet: **Save cut-out** keeps them.")
        if garment["segmentation_backend"]:
            lines.append(f"<small>Cut out by {backend_label(garment['segmentation_backend'])}.</small>")
        return "  \n".join(lines)

    def show(studio: Studio, chosen_id: str, shown: str = CUTOUT_VIEW, points: list | None = None) -> tuple:
        if not chosen_id:
            return (gr.Column(visible=False), CUTOUT_VIEW, None, "", [], "", None, gr.Button(visible=False), "", None,
                    "", None)
        garment = studio.get_garment(chosen_id)
        points = points or []
        mask = shown_mask(studio, chosen_id, points)
        return (gr.Column(visible=True), shown, picture_of(studio, chosen_id, shown, points, mask),
                note_for(studio, chosen_id, points, mask), points, *attribute_values(garment))

    review.show = show

    def on_view(chosen_id: str, shown: str, points: list, request: gr.Request):
        studio = ctx.studio_for(request)
        if not chosen_id:
            return None
        return picture_of(studio, chosen_id, shown, points, shown_mask(studio, chosen_id, points))

    def on_tap(chosen_id: str, points: list, tap_mode: str, shown: str, event: gr.SelectData, request: gr.Request):
        studio = ctx.studio_for(request)
        if not chosen_id:
            raise gr.Error("Choose a garment in your closet first.")
        garment = studio.get_garment(chosen_id)
        scale = preview_scale((garment["width"], garment["height"]))
        x = min(event.index[0] / scale, garment["width"] - 1)
        y = min(event.index[1] / scale, garment["height"] - 1)
        points = [*points, [round(x, 1), round(y, 1), 1 if tap_mode == ADD else 0]]
        mask = shown_mask(studio, chosen_id, points)
        return (picture_of(studio, chosen_id, CUTOUT_VIEW, points, mask), note_for(studio, chosen_id, points, mask),
                points, CUTOUT_VIEW)

    def on_undo(chosen_id: str, points: list, request: gr.Request):
        studio = ctx.studio_for(request)
        points = points[:-1]
        if not chosen_id:
            return None, "", []
        mask = shown_mask(studio, chosen_id, points)
        return (picture_of(studio, chosen_id, CUTOUT_VIEW, points, mask), note_for(studio, chosen_id, points, mask),
                points)

    def left_as_it_is(message: str) -> list:
        """A toast, and the panel as it was: an error raised here would cover every field with an error badge."""
        gr.Warning(message)
        return [gr.skip()] * len(review.outputs)

    def on_reset(chosen_id: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if not chosen_id:
            return left_as_it_is("Choose a garment in your closet first.")
        garment = studio.segment_garment(chosen_id)
        if garment["status"] == "failed":
            gr.Warning(garment["error_message"])
        else:
            gr.Info("Back to the automatic cut-out (saved).", duration=CONFIRMATION_SECONDS)
        return show(studio, chosen_id)

    def on_save_cutout(chosen_id: str, points: list, request: gr.Request):
        studio = ctx.studio_for(request)
        if not chosen_id:
            return left_as_it_is("Choose a garment in your closet first.")
        if not points:
            gr.Info("Nothing to save: the cut-out shown is the one your photos use. Tap the picture to add or "
                    "remove a part first.", duration=CONFIRMATION_SECONDS)
            return [gr.skip()] * len(review.outputs)
        try:
            studio.refine_garment(chosen_id, points)
        except StudioError as error:
            return left_as_it_is(str(error))
        gr.Info("Cut-out saved.", duration=CONFIRMATION_SECONDS)
        return show(studio, chosen_id)

    def edit(field: str) -> Callable:
        """A handler storing one listing field as the seller set it; every field is shown again, since the
        suggested title follows the others."""
        def on_edit(chosen_id: str, value: str | None, request: gr.Request):
            studio = ctx.studio_for(request)
            if not chosen_id or (value is None and field != "title"):
                return [gr.skip()] * len(review.attributes)
            garment = studio.get_garment(chosen_id)
            if str(value or "").strip().lower() == str(garment[STORED[field]] or "").lower():
                # A box left as it was (its blur after Enter, or a tap elsewhere) rewrites nothing: rewriting the
                # other fields would undo the category or colour the seller tapped at the same moment.
                return [gr.skip()] * len(review.attributes)
            if field != "title" and not str(value).strip():
                return only(field, attribute_values(garment))  # an emptied box shows what is stored
            updated = attribute_values(studio.update_garment(chosen_id, **{field: value}))
            return only("title", updated) if field == "title" else updated  # the other fields follow the title
        return on_edit

    def only(field: str, values: list) -> list:
        keep = ATTRIBUTE_FIELDS.index(field)
        return [value if index == keep else gr.skip() for index, value in enumerate(values)]

    def on_confirm(chosen_id: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if not chosen_id:
            return [gr.skip()] * len(review.attributes)
        return attribute_values(studio.update_garment(chosen_id, category=studio.get_garment(chosen_id)["category"]))

    # A field's save is quick and must not cover the other fields with a progress overlay: a tap on the category
    # while the title's box saves on losing focus would land on the overlay and be lost.
    quiet = {**PRIVATE, "show_progress": "hidden"}
    fields = review.attributes
    ui = explained
    view.input(ui(on_view), [garment_id, view, clicks], picture, **PRIVATE)
    picture.select(ui(on_tap), [garment_id, clicks, mode, view], [picture, note, clicks, view], **PRIVATE)
    undo.click(ui(on_undo), [garment_id, clicks], [picture, note, clicks], **PRIVATE)
    review.edited = [
        reset.click(ui(on_reset), garment_id, review.outputs, **PRIVATE),
        save_cutout.click(ui(on_save_cutout), [garment_id, clicks], review.outputs, **PRIVATE),
        title.submit(ui(edit("title")), [garment_id, title], fields, **quiet),
        title.blur(ui(edit("title")), [garment_id, title], fields, **quiet),
        category.input(ui(edit("category")), [garment_id, category], fields, **quiet),
        color_name.submit(ui(edit("color_name")), [garment_id, color_name], fields, **quiet),
        color_name.blur(ui(edit("color_name")), [garment_id, color_name], fields, **quiet),
        color_hex.input(ui(edit("color_hex")), [garment_id, color_hex], fields, **quiet),
        secondary_color.submit(ui(edit("secondary_color")), [garment_id, secondary_color], fields, **quiet),
        secondary_color.blur(ui(edit("secondary_color")), [garment_id, secondary_color], fields, **quiet),
        pattern.input(ui(edit("pattern")), [garment_id, pattern], fields, **quiet),
        confirm.click(ui(on_confirm), garment_id, fields, **quiet),
    ]
    return review


def taps_that_added_nothing(mask: np.ndarray, points: list) -> int:
    """How many garment taps ([x, y, 1] in photo pixels) after the last removing tap land outside `mask`: what
    they added was a dot apart from the garment, which the cut-out drops."""
    height, width = mask.shape[:2]
    removes = [index for index, (_, _, label) in enumerate(points) if not label]
    since = removes[-1] + 1 if removes else 0
    return sum(1 for x, y, _ in points[since:] if not mask[min(int(y), height - 1), min(int(x), width - 1)])


ATTRIBUTE_FIELDS = ("title", "category", "confirm", "color_name", "color_hex", "secondary_color", "pattern")


def attribute_values(garment: dict) -> list:
    """The listing fields' values for `Review.attributes`: the category asked about when the studio is unsure."""
    unsure = category_is_uncertain(garment)
    return [garment.get("title") or "",
            gr.Radio(value=garment["category"], label=category_question(garment)),
            gr.Button(f"Yes, it is {with_article(garment['category'])}" if unsure else "", visible=unsure),
            garment["detected_color"] or "", garment["detected_color_hex"] or None,
            garment.get("secondary_color") or "", garment.get("pattern")]
