"""Make photos: the look and the marketplaces, for one garment or the whole closet, then the results with star,
download and a zip per marketplace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from pipeline.naming import garment_name
from pipeline.presets import ASPECT_RATIOS, BACKGROUNDS, MARKETPLACES
from pipeline.studio import GHOST_MODEL_ID, Studio
from ui.common import PRIVATE, UIContext, output_items, wait_for_job
from ui.persona import build_persona_panel
from ui.tuning import build_tuning, past_runs
from web.api import export_marketplace_for_download
from web.errors import explained

RESULTS_SHOWN = 24
FILE_FORMATS = {"JPEG": "jpeg", "PNG": "png"}


@dataclass
class Photos:
    section: gr.Row
    marketplaces: gr.CheckboxGroup
    size_note: gr.Markdown
    results: gr.Gallery
    output_ids: gr.State
    past_runs: gr.Dropdown
    zip_market: gr.Dropdown
    show: Callable[..., tuple] = lambda *args: ()  # (studio, garment_id) -> the values of `outputs`
    made: list = field(default_factory=list)  # events after which garments have new photos

    @property
    def outputs(self) -> list:
        return [self.section, self.size_note, self.results, self.output_ids, self.past_runs]


def look_choices(models: list[dict]) -> list[tuple[str, str]]:
    """Ghost shots on each background first, then the personas that can run here, by their plain names."""
    ghosts = [m for m in models if m["backend"] == "ghost" and m["available"]]
    choices = [(background.capitalize() if len(ghosts) == 1 else f"{ghost['name']} on {background}",
                f"{ghost['id']}:{background}") for ghost in ghosts for background in BACKGROUNDS]
    return choices + [(m["name"], f"{m['id']}:white") for m in models if m["backend"] != "ghost" and m["available"]]


def personas_line(models: list[dict]) -> str:
    if any(m["backend"] != "ghost" and m["available"] for m in models):
        return ""
    return ("On-model photos (the garment worn by a model) need a GPU and the model weights: see *Studio status* "
            "at the bottom of the page for how to enable them.")


def build_photos(ctx: UIContext, garment_id: gr.State) -> Photos:
    models = ctx.studio.virtual_models()
    with gr.Row(visible=False) as section:  # side by side on a wide screen, one below the other on a phone
        with gr.Column(min_width=320):
            gr.Markdown("### 3 · Make photos", elem_classes="step-title")
            look = gr.Radio(look_choices(models), value=f"{GHOST_MODEL_ID}:white", elem_classes="chips",
                            label="Look: your garment on a clean background, or worn by a model")
            line = personas_line(models)
            if line:
                gr.Markdown(line, elem_classes="quiet")
            build_persona_panel(ctx, look)
            marketplaces = gr.CheckboxGroup([(p.name, p.key) for p in MARKETPLACES.values()], label="Marketplaces",
                                            elem_classes="chips")
            with gr.Accordion("Other sizes and file type", open=False):
                ratios = gr.CheckboxGroup(list(ASPECT_RATIOS), value=[], label="Plain shapes (sized from your photo)")
                file_format = gr.Radio(list(FILE_FORMATS), value="JPEG", label="File type")
            size_note = gr.Markdown(elem_classes="quiet")
            with gr.Row():
                make_one_button = gr.Button("Make photos", variant="primary", min_width=120)
                make_all_button = gr.Button("Make photos for the whole closet", min_width=200)
            stop = gr.Button("Stop", variant="stop", size="sm", visible=False)  # shown while photos are made
            tuning = build_tuning(ctx, look, {m["id"] for m in models if m["backend"] != "ghost"})
        with gr.Column(min_width=320):
            gr.Markdown("### 4 · Your photos", elem_classes="step-title")
            results = gr.Gallery(label="Photos of this garment", show_label=False, columns=3, height="auto",
                                 format="jpeg", allow_preview=True, elem_id="results", buttons=["fullscreen"],
                                 fit_columns=False, visible=False)
            with gr.Row():
                favorite = gr.Button("☆ Favourite", interactive=False, size="sm", min_width=100)
                download = gr.DownloadButton("Download", interactive=False, size="sm", variant="primary",
                                             min_width=100)
            output_info = gr.Markdown(elem_classes="quiet")
            with gr.Row(equal_height=True):
                zip_market = gr.Dropdown([(p.name, p.key) for p in MARKETPLACES.values()], label="Zip for",
                                         scale=1, min_width=120)
                zip_button = gr.Button("Zip the closet's photos", scale=1, min_width=120)
            zip_file = gr.File(label="Your zip", interactive=False, visible=False)
    output_ids, selected = gr.State([]), gr.State("")
    photos = Photos(section, marketplaces, size_note, results, output_ids, tuning.past_runs, zip_market)

    def size_words(studio: Studio, chosen_id: str, markets: list[str], shapes: list[str]) -> str:
        if not chosen_id:
            return ""
        notes = [check["message"] for check in studio.size_check(chosen_id, markets or [], shapes or [])]
        return "  \n".join(f"⚠ {note}" for note in notes)

    def garment_outputs(studio: Studio, chosen_id: str) -> list[dict]:
        outputs = []
        for job in studio.list_generations(chosen_id, limit=50):
            if job["status"] == "completed":
                outputs += studio.get_generation(job["id"])["outputs"]
        return outputs[:RESULTS_SHOWN]

    def show(studio: Studio, chosen_id: str, markets: list[str] | None = None, shapes: list[str] | None = None
             ) -> tuple:
        if not chosen_id:
            return gr.Row(visible=False), "", gr.Gallery(value=[], visible=False), [], gr.Dropdown(choices=[])
        outputs = garment_outputs(studio, chosen_id)
        items = output_items(studio, outputs)
        return (gr.Row(visible=True), size_words(studio, chosen_id, markets or [], shapes or []),
                gr.Gallery(value=items, visible=bool(items)), [o["id"] for o in outputs],
                past_runs(studio, chosen_id))

    photos.show = show

    def controls(studio: Studio, output_id: str) -> tuple:
        if not output_id:
            return "", gr.Button("☆ Favourite", interactive=False), gr.DownloadButton(value=None, interactive=False), ""
        output = studio.get_output(output_id)
        garment = studio.get_garment(studio.get_generation(output["generation_id"])["garment_id"])
        shape = output["marketplace"] or output["aspect_ratio"].replace(":", "x")
        name = f"{garment_name(garment)}-{shape}-{output['image_index'] + 1}{studio.file_path(output['image_url']).suffix}"
        path = ctx.served.named_copy(studio.owner_id, garment["id"], studio.file_path(output["image_url"]), name)
        star = "★ Favourite" if output["is_favorite"] else "☆ Favourite"
        info = f"{name} · {output['width']}×{output['height']} px · downloaded {output['download_count']}×"
        return output_id, gr.Button(star, interactive=True), gr.DownloadButton(value=path, interactive=True), info

    control_outputs = [selected, favorite, download, output_info]

    def options_for(look_value: str, tuning_values: tuple):
        model_id, background = look_value.split(":", 1) if look_value else (GHOST_MODEL_ID, "white")
        options = tuning.options(*tuning_values) if model_id != GHOST_MODEL_ID else None
        return model_id, background, options

    def check_sizes_chosen(markets: list[str], shapes: list[str]) -> None:
        if not markets and not shapes:
            raise gr.Error("Tick at least one marketplace (or a plain shape under Other sizes).")

    def make_one(studio: Studio, chosen_id: str, job_inputs: tuple, repeat_of: str, progress: gr.Progress) -> None:
        if not chosen_id:
            raise gr.Error("Add a photo first, or choose a garment in your closet.")
        model_id, markets, shapes, background, fmt, options = job_inputs
        job = studio.generate(chosen_id, model_id, shapes, markets, background, fmt, options=options,
                              rerun_of=repeat_of or None)
        job = wait_for_job(studio, job["id"], progress, 0, 1, "Making photos: ")
        if job["status"] == "failed":
            gr.Warning(f"The photos could not be made: {job['error_message']}")

    def make_closet(studio: Studio, job_inputs: tuple, progress: gr.Progress) -> str:
        """Photos of every garment; returns the garment of the first job."""
        model_id, markets, shapes, background, fmt, options = job_inputs
        result = studio.generate_closet(model_id, markets, shapes, background, fmt, options=options, wait=True,
                                        progress=lambda done, total: progress(done / max(total, 1),
                                                                              desc=f"Photos {done} of {total} garments"))
        failed = [job for job in result["jobs"] if job["status"] == "failed"]
        for job in failed:
            gr.Warning(f"A garment's photos could not be made: {job['error_message']}")
        for skipped in result["skipped"]:
            gr.Warning(skipped["reason"])
        made = len(result["jobs"]) - len(failed)
        gr.Info(f"Photos made for {made} garment{'s' if made != 1 else ''}. Zip them for a marketplace below.")
        return result["jobs"][0]["garment_id"] if result["jobs"] else ""

    def make_handler(whole_closet: bool):
        """The click handler of "Make photos" (this garment) or "Make photos for the whole closet"."""

        def on_make(chosen_id: str, look_value: str, markets: list[str], shapes: list[str], fmt: str, prompt: str,
                    negative: str, batch: int, seed: float, steps: float, guidance: float, ip: float,
                    control: float, width: float, height: float, pose: str, repeat_of: str, request: gr.Request,
                    progress=gr.Progress()):
            studio = ctx.studio_for(request)
            check_sizes_chosen(markets, shapes)
            model_id, background, options = options_for(
                look_value, (prompt, negative, batch, seed, steps, guidance, ip, control, width, height, pose))
            job_inputs = (model_id, markets, shapes, background, FILE_FORMATS.get(fmt, "jpeg"), options)
            if whole_closet:
                first_made = make_closet(studio, job_inputs, progress)
                chosen_id = chosen_id or first_made
            else:
                make_one(studio, chosen_id, job_inputs, repeat_of, progress)
            shown = show(studio, chosen_id, markets, shapes)
            first = shown[3][0] if shown[3] else ""
            zip_for = markets[0] if whole_closet and markets else gr.skip()
            return (*shown, *controls(studio, first), zip_for)

        return on_make

    def on_stop(request: gr.Request):
        studio = ctx.studio_for(request)
        running = [job for job in studio.list_generations(limit=50) if job["status"] in ("pending", "processing")]
        for job in running:
            studio.cancel_generation(job["id"])
        gr.Info(f"Stopped {len(running)} job(s)." if running else "Nothing is running.")

    def on_select(ids: list[str], event: gr.SelectData, request: gr.Request):
        studio = ctx.studio_for(request)
        output_id = ids[event.index] if event.index is not None and event.index < len(ids) else ""
        return controls(studio, output_id)

    def on_favorite(chosen_id: str, output_id: str, ids: list[str], request: gr.Request):
        studio = ctx.studio_for(request)
        if not output_id:
            raise gr.Error("Tap a photo first.")
        studio.set_favorite(output_id, not studio.get_output(output_id)["is_favorite"])
        items = output_items(studio, [studio.get_output(each) for each in ids])
        return (items, *controls(studio, output_id))

    def on_download(output_id: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if output_id:
            studio.download(output_id)
        return controls(studio, output_id)[3]

    def on_zip(market: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if not market:
            raise gr.Error("Choose the marketplace to zip for.")
        return gr.File(value=str(export_marketplace_for_download(studio, ctx.served, market)), visible=True)

    def on_markets(chosen_id: str, markets: list[str], shapes: list[str], request: gr.Request):
        studio = ctx.studio_for(request)
        studio.set_preferred_marketplaces(markets)
        first = markets[0] if markets else gr.skip()
        return size_words(studio, chosen_id, markets, shapes), first

    def on_shapes(chosen_id: str, markets: list[str], shapes: list[str], request: gr.Request):
        return size_words(ctx.studio_for(request), chosen_id, markets, shapes)

    ui = explained
    inputs = [garment_id, look, marketplaces, ratios, file_format, *tuning.fields, tuning.rerun_of]
    made_outputs = [*photos.outputs, *control_outputs, zip_market]
    photos.made = []
    for button, whole_closet in ((make_one_button, False), (make_all_button, True)):
        started = button.click(lambda: gr.Button(visible=True), None, stop, queue=False, **PRIVATE)
        made = started.then(ui(make_handler(whole_closet)), inputs, made_outputs, concurrency_id="gpu",
                            concurrency_limit=1, **PRIVATE)
        made.then(lambda: gr.Button(visible=False), None, stop, queue=False, **PRIVATE)
        photos.made.append(made)
    stop.click(ui(on_stop), None, None, queue=False, **PRIVATE)
    results.select(ui(on_select), output_ids, control_outputs, **PRIVATE)
    favorite.click(ui(on_favorite), [garment_id, selected, output_ids], [results, *control_outputs], **PRIVATE)
    download.click(ui(on_download), selected, output_info, **PRIVATE)
    zip_button.click(ui(on_zip), zip_market, zip_file, **PRIVATE)
    marketplaces.input(ui(on_markets), [garment_id, marketplaces, ratios], [size_note, zip_market], **PRIVATE)
    ratios.input(ui(on_shapes), [garment_id, marketplaces, ratios], size_note, **PRIVATE)
    return photos
