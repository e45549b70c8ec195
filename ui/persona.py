"""The chosen persona's reference photo, under the looks: the same person wears every garment of the closet. Shown
for the image-editing families only (SDXL and SD 1.5 draw the person from the card's words); the seller can ask for
another person or use their own photo of themselves or their model."""

from __future__ import annotations

import random

import gradio as gr

from pipeline.errors import InputError
from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext
from web.errors import explained


def build_persona_panel(ctx: UIContext, look: gr.Radio) -> None:
    with gr.Column(visible=False, elem_id="persona-panel") as panel:
        picture = gr.Image(label="The same person in every photo", interactive=False, height=260, buttons=[],
                           elem_id="persona-photo")
        note = gr.Markdown(elem_classes="quiet")
        with gr.Row():
            another = gr.Button("Another person", size="sm", min_width=120)
            own = gr.UploadButton("Use my own model photo", file_types=["image"], size="sm", min_width=160)

    def persona_of(studio: Studio, look_value: str) -> str | None:
        model_id = (look_value or "").split(":", 1)[0]
        if not model_id or not studio.uses_persona_photos(model_id):
            return None
        return model_id

    def shown(studio: Studio, model_id: str | None) -> tuple:
        if model_id is None:
            return gr.Column(visible=False), None, ""
        name = studio.model_name(model_id)
        try:
            photo = studio.persona_photo(model_id)
        except InputError:
            return (gr.Column(visible=True), None,
                    f"{name}'s photo is made with your first photo of {name}, then the same person wears every garment.")
        whose = "Your own photo" if photo["source"] == "user" else f"Made once from {name}'s card"
        return (gr.Column(visible=True), str(studio.file_path(photo["image_url"])),
                f"{whose}, used for every garment of your closet.")

    def on_look(look_value: str, request: gr.Request):
        studio = ctx.studio_for(request)
        return shown(studio, persona_of(studio, look_value))

    def on_another(look_value: str, request: gr.Request, progress=gr.Progress()):
        studio = ctx.studio_for(request)
        model_id = persona_of(studio, look_value)
        if model_id is None:
            raise gr.Error("Choose a model among the looks first.")
        progress(0.1, desc="Making another person")
        studio.make_persona_photo(model_id, seed=random.randint(0, 2**31 - 1))
        return shown(studio, model_id)

    def on_own(look_value: str, upload, request: gr.Request):
        studio = ctx.studio_for(request)
        model_id = persona_of(studio, look_value)
        if model_id is None or upload is None:
            raise gr.Error("Choose a model among the looks first, then your photo.")
        studio.set_persona_photo(model_id, upload if isinstance(upload, str) else upload.name)
        gr.Info("Your photo will be used for this model's photos. Only you can see it.")
        return shown(studio, model_id)

    outputs = [panel, picture, note]
    look.change(explained(on_look), look, outputs, **PRIVATE)
    another.click(explained(on_another), look, outputs, **PRIVATE)
    own.upload(explained(on_own), [look, own], outputs, **PRIVATE)
