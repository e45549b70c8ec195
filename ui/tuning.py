"""The prompt-tuning panel for ML engineers: every on-model parameter, and any past run loaded back into it."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipeline.on_model import OnModelOptions, on_model_options
from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext, when
from web.errors import explained


@dataclass
class Tuning:
    past_runs: gr.Dropdown
    fields: list  # the panel's inputs, in `on_model_options` order
    rerun_of: gr.State

    def options(self, *values) -> OnModelOptions:
        return on_model_options(*values)


def run_label(job: dict) -> str:
    return f"{when(job['created_at'])} · {job['target_model_id']} · {job['status']}"


def past_runs(studio: Studio, garment_id: str) -> gr.Dropdown:
    if not garment_id:
        return gr.Dropdown(choices=[], value=None)
    return gr.Dropdown(choices=[(run_label(job), job["id"]) for job in studio.list_generations(garment_id)],
                       value=None)


def build_tuning(ctx: UIContext, look: gr.Radio, on_model_ids: set[str]) -> Tuning:
    """The panel shows only while a look worn by a model is chosen: a seller making ghost shots never meets it."""

    def worn_by_a_model(look_value: str | None) -> bool:
        return (look_value or "").split(":", 1)[0] in on_model_ids

    with gr.Accordion("Prompt tuning (on-model photos)", open=False, visible=worn_by_a_model(look.value)) as panel:
        gr.Markdown("Empty fields, seed -1, steps 0, guidance -1 and size 0 use the model card's and the model "
                    "family's defaults. *Load* fills the panel from a past run of this garment; *Make photos* then "
                    "runs it again with your changes.", elem_classes="quiet")
        with gr.Row():
            runs = gr.Dropdown(label="Past run", choices=[], scale=3)
            load = gr.Button("Load its parameters", scale=1)
        prompt = gr.Textbox(label="Prompt", lines=2, placeholder="built from the card, category and colour")
        negative = gr.Textbox(label="Negative prompt", lines=2, placeholder="the card's default")
        with gr.Row():
            batch = gr.Slider(1, 4, value=1, step=1, label="Batch size")
            seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
            steps = gr.Number(value=0, precision=0, label="Steps (0: default)")
            guidance = gr.Number(value=-1, label="Guidance (-1: default)")
        with gr.Row():
            ip_scale = gr.Slider(0, 2, value=0.7, step=0.05, label="IP-Adapter scale (garment)")
            control_scale = gr.Slider(0, 2, value=0.8, step=0.05, label="ControlNet scale (pose)")
            width = gr.Number(value=0, precision=0, label="Width (0: default)")
            height = gr.Number(value=0, precision=0, label="Height (0: default)")
            pose = gr.Textbox(label="Pose name", placeholder="best for the category")
    rerun_of = gr.State("")
    fields = [prompt, negative, batch, seed, steps, guidance, ip_scale, control_scale, width, height, pose]

    def on_load(generation_id: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if not generation_id:
            raise gr.Error("Choose a past run first.")
        job = studio.get_generation(generation_id)
        if job["backend"] != "diffusion":
            raise gr.Error("That is a ghost run: it has no prompt parameters to load.")
        p = job["parameters"]
        background = p.get("background", "white")
        return (p["prompt"], p["negative_prompt"], len(p["seeds"]), p["seeds"][0], p["steps"], p["guidance_scale"],
                p["ip_adapter_scale"], p["controlnet_scale"], p["width"], p["height"], p["pose"], generation_id,
                f"{job['target_model_id']}:{background}")

    load.click(explained(on_load), runs, [*fields, rerun_of, look], **PRIVATE)
    look.change(lambda value: gr.Accordion(visible=worn_by_a_model(value)), look, panel, queue=False, **PRIVATE)
    return Tuning(runs, fields, rerun_of)
