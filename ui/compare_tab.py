"""The Compare tab: two runs side by side, their images and the parameters that differ, highlighted."""

from __future__ import annotations

import html

import gradio as gr

from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext, output_items, when
from web.errors import explained

COMPARED = ("target_model_id", "backend", "status", "background", "file_format", "sizes", "prompt",
            "negative_prompt", "seeds", "steps", "guidance_scale", "ip_adapter_scale", "controlnet_scale", "width",
            "height", "pose")


def run_label(studio: Studio, job: dict, names: dict[str, str]) -> str:
    garment = studio.get_garment(job["garment_id"])
    what = f"{garment.get('detected_color') or ''} {garment.get('category') or 'garment'}".strip()
    model = names.get(job["target_model_id"], job["target_model_id"])
    look = f"{model} on {job['parameters'].get('background', 'white')}"
    return f"{what} · {look} · {when(job['created_at'])}:{job['created_at'][17:19]} · {job['status']}"


def parameters(job: dict | None) -> dict:
    if not job:
        return {}
    p = job["parameters"]
    sizes = ", ".join(spec.get("marketplace") or spec.get("aspect_ratio") for spec in p.get("outputs", []))
    return {"target_model_id": job["target_model_id"], "backend": job["backend"], "status": job["status"],
            "sizes": sizes, **{key: p.get(key) for key in COMPARED if key in p}}


def differences_table(a: dict | None, b: dict | None) -> str:
    """A table of both runs' parameters; rows that differ are marked and bold."""
    left, right = parameters(a), parameters(b)
    if not left and not right:
        return ""
    rows = ["| | parameter | run A | run B |", "| --- | --- | --- | --- |"]
    for key in COMPARED:
        if key not in left and key not in right:
            continue
        va, vb = (html.escape(str(side.get(key, "—"))) for side in (left, right))
        if va != vb and left and right:
            rows.append(f"| ≠ | **{key}** | **{va}** | **{vb}** |")
        else:
            rows.append(f"| | {key} | {va} | {vb} |")
    return "\n".join(rows)


def build_compare_tab(ctx: UIContext, tab: gr.Tab) -> None:
    gr.Markdown("Two runs of any garment side by side; the parameters that differ are marked ≠.",
                elem_classes="quiet")
    pickers, galleries = {}, {}
    with gr.Row():
        for side in ("A", "B"):
            with gr.Column(min_width=160):
                pickers[side] = gr.Dropdown(label=f"Run {side}", choices=[])
                galleries[side] = gr.Gallery(label=f"Run {side}", show_label=False, columns=2, height="auto",
                                             format="jpeg", fit_columns=False)
    table = gr.Markdown()

    def on_open(request: gr.Request):
        studio = ctx.studio_for(request)
        names = {model["id"]: model["name"] for model in studio.virtual_models()}
        choices = [(run_label(studio, job, names), job["id"]) for job in studio.list_generations(limit=200)]
        return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices)

    def on_pick(a_id: str, b_id: str, request: gr.Request):
        studio = ctx.studio_for(request)
        a = studio.get_generation(a_id) if a_id else None
        b = studio.get_generation(b_id) if b_id else None
        return (output_items(studio, a["outputs"]) if a else [], output_items(studio, b["outputs"]) if b else [],
                differences_table(a, b))

    ui = explained
    tab.select(ui(on_open), None, [pickers["A"], pickers["B"]], **PRIVATE)
    for side in ("A", "B"):
        pickers[side].input(ui(on_pick), [pickers["A"], pickers["B"]], [galleries["A"], galleries["B"], table],
                            **PRIVATE)
