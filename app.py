"""Resell Studio's Gradio app: builds the UI and the API, and wires both to the studio service.

`create_demo(studio)` builds everything; nothing heavy happens at import. `demo` is built on first access (for
Spaces and `gradio app.py`), and `python app.py` serves it like `resell-studio serve`.
"""

from __future__ import annotations

try:
    import spaces  # noqa: F401  (ZeroGPU: must be imported before anything touches CUDA)
except ImportError:
    pass

import functools
import html
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from gradio import FileData
from gradio.utils import get_upload_folder as gradio_upload_folder
from starlette.middleware import Middleware

from pipeline.accounts import Accounts
from pipeline.attributes import CATEGORIES
from pipeline.errors import InputError, StudioError
from pipeline.ingest import MAX_UPLOAD_BYTES
from pipeline.on_model import on_model_options
from pipeline.generation import DEFAULT_ASPECT_RATIOS, FILE_FORMATS
from pipeline.presets import ASPECT_RATIOS, BACKGROUNDS, DEFAULT_BACKGROUND, MARKETPLACES
from pipeline.previews import mask_overlay, preview_scale, thumbnail
from pipeline.settings import DEFAULT_HOST, DEFAULT_PORT, Settings, check_auth
from pipeline.studio import GHOST_MODEL_ID, Studio
from web.access import Access
from web.served_files import ServedFiles, digests
from web.sign_in import SignInGuard, refuse_outside_the_guard

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])
POLL_SECONDS = 0.2
CACHE_SWEEP_S, CACHE_KEEP_S = 30 * 60, 60 * 60
CSS = """
.model-cards {display: flex; flex-wrap: wrap; gap: 10px;}
.model-card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px; min-width: 160px;
             max-width: 260px;}
.model-note {font-size: 0.9em; color: var(--body-text-color-subdued); margin: 0 0 8px;}
.model-card.unavailable {opacity: 0.55;}
.model-card .tags {font-size: 0.85em; color: var(--body-text-color-subdued);}
"""


def explained(handler: Handler) -> Handler:
    """Shows a StudioError's message to the user as it is; logs anything else and says so plainly."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except StudioError as error:
            raise gr.Error(str(error)) from error
        except Exception as error:
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}); nothing was changed. "
                           "Try again, and report it if it keeps happening.") from error

    return wrapper  # type: ignore[return-value]


class StudioAPI:
    """The public API: one typed method per endpoint, returning plain JSON (and files from /download)."""

    def __init__(self, access: Access, served: ServedFiles | None = None):
        self.access = access
        self.served = served or ServedFiles(access.studio.settings.data_dir / "served")

    def upload_garment(self, photo: FileData, segment: bool = True, backend: str = "", request: gr.Request = None) -> dict:
        """Upload a garment photo (JPEG, PNG, WebP or HEIC). Cuts the garment out unless `segment` is false
        (backend auto, classic or sam; empty for the studio's setting) and returns the garment: id, status,
        category, category_source, detected_color, detected_color_hex, mask_image_url, segmentation_backend, ..."""
        path, name = _file_path_and_name(photo)
        return self.access.studio_for(request).upload_garment(path, filename=name, segment=bool(segment), backend=backend or None)

    def segment_garment(self, garment_id: str, backend: str = "", request: gr.Request = None) -> dict:
        """Cut the garment out again (backend: auto, classic or sam; empty for the studio's setting)."""
        return self.access.studio_for(request).segment_garment(garment_id, backend or None)

    def refine_garment(self, garment_id: str, points: list[list[float]], backend: str = "", request: gr.Request = None) -> dict:
        """Refine the cut-out with clicks and store it: points are [x, y, label] in photo pixels, label 1 for
        garment and 0 for background. Returns the garment, with the points in `mask_points`."""
        return self.access.studio_for(request).refine_garment(garment_id, points, backend or None)

    def update_garment(self, garment_id: str, category: str = "", color_name: str = "", color_hex: str = "", request: gr.Request = None) -> dict:
        """Correct the category (top, bottom, dress, outerwear) and/or colour; empty values are left as they are."""
        return self.access.studio_for(request).update_garment(garment_id, category or None, color_name or None, color_hex or None)

    def generate(self, garment_id: str, model_id: str = GHOST_MODEL_ID, aspect_ratios: list[str] | None = None,
                 marketplaces: list[str] | None = None, background: str = DEFAULT_BACKGROUND,
                 file_format: str = "jpeg", wait: bool = False, prompt: str = "", negative_prompt: str = "",
                 batch_size: int = 1, seed: int = -1, steps: int = 0, guidance_scale: float = -1.0,
                 ip_adapter_scale: float = 0.7, controlnet_scale: float = 0.8, width: int = 0, height: int = 0,
                 pose: str = "", request: gr.Request = None) -> dict:
        """Start a generation job. Returns the job (status pending), or the finished job when `wait` is true.
        Poll /generation with its id; its `outputs` list the images (ids for /download and /set_favorite).
        Persona models (on-model photos) also take the diffusion parameters: an empty prompt, seed -1, steps 0,
        guidance -1 and size 0 mean the card's and the model family's defaults; `prompt_used` shows the result."""
        options = on_model_options(prompt, negative_prompt, batch_size, seed, steps, guidance_scale,
                                   ip_adapter_scale, controlnet_scale, width, height, pose)
        return self.access.studio_for(request).generate(garment_id, model_id, aspect_ratios or [], marketplaces or [], background,
                                    file_format, wait=bool(wait), options=options)

    def rerun_generation(self, generation_id: str, wait: bool = False, prompt: str = "", negative_prompt: str = "",
                         seed: int = -1, steps: int = 0, guidance_scale: float = -1.0, ip_adapter_scale: float = -1.0,
                         controlnet_scale: float = -1.0, request: gr.Request = None) -> dict:
        """Run a past generation again with its stored parameters and seeds; any value given here replaces the
        stored one (empty, -1 and 0 keep it). The new job records `rerun_of`."""
        try:
            changes = {"prompt": prompt or None, "negative_prompt": negative_prompt or None,
                       "seed": seed if seed >= 0 else None, "steps": steps or None,
                       "guidance_scale": guidance_scale if guidance_scale >= 0 else None,
                       "ip_adapter_scale": ip_adapter_scale if ip_adapter_scale >= 0 else None,
                       "controlnet_scale": controlnet_scale if controlnet_scale >= 0 else None}
        except TypeError:  # a string or null where a number belongs
            raise InputError("seed, steps and the scales must be numbers; -1 (0 for steps) keeps the stored "
                             "value.") from None
        return self.access.studio_for(request).rerun_generation(generation_id, wait=bool(wait), **changes)

    def cancel_generation(self, generation_id: str, request: gr.Request = None) -> dict:
        """Stop a queued or running job; it ends failed with "Cancelled." and keeps no files."""
        return self.access.studio_for(request).cancel_generation(generation_id)

    def generation(self, generation_id: str, request: gr.Request = None) -> dict:
        """A generation job: status, progress, error_message, parameters and outputs."""
        return self.access.studio_for(request).get_generation(generation_id)

    def list_garments(self, limit: int = 50, offset: int = 0, request: gr.Request = None) -> list[dict]:
        """Your garments, newest first."""
        return self.access.studio_for(request).list_garments(limit, offset)

    def list_generations(self, garment_id: str = "", limit: int = 50, offset: int = 0, request: gr.Request = None) -> list[dict]:
        """Generation jobs, newest first; only those of one garment when garment_id is given."""
        return self.access.studio_for(request).list_generations(garment_id or None, limit, offset)

    def set_favorite(self, output_id: str, is_favorite: bool = True, request: gr.Request = None) -> dict:
        """Star or unstar an output image."""
        return self.access.studio_for(request).set_favorite(output_id, bool(is_favorite))

    def download(self, output_id: str, request: gr.Request = None) -> FileData:
        """The output image file; counts the download."""
        path, _ = self.access.studio_for(request).download(output_id)
        return FileData(path=str(path), orig_name=path.name)

    def export_garment(self, garment_id: str, favorites_only: bool = False, request: gr.Request = None) -> FileData:
        """A zip of the garment's photos, the real cut-outs first; only starred ones when favorites_only."""
        studio = self.access.studio_for(request)
        path = export_for_download(studio, self.served, garment_id, bool(favorites_only))
        return FileData(path=str(path), orig_name=path.name)

    def delete_garment(self, garment_id: str, request: gr.Request = None) -> dict:
        """Delete a garment with its generations, outputs and files."""
        return delete_garment(self.access.studio_for(request), self.served, garment_id)

    def delete_account(self, confirm: str, request: gr.Request = None) -> dict:
        """Delete your account with everything in it; `confirm` must be DELETE."""
        if confirm != "DELETE":
            raise InputError('To delete your account and everything in it, pass confirm="DELETE".')
        return delete_account(self.access, self.access.studio_for(request), self.served)

    def usage(self, request: gr.Request = None) -> dict:
        """Your plan's limits and what you have used: generations today, jobs running, storage."""
        return self.access.studio_for(request).usage()

    def create_api_token(self, name: str = "", request: gr.Request = None) -> dict:
        """A new API token for programs (shown once, in `token`); only on a studio with accounts."""
        studio = self.access.studio_for(request)
        return self._accounts().create_token(studio.owner_id, name)

    def list_api_tokens(self, request: gr.Request = None) -> list[dict]:
        """Your API tokens: id, name, created_at, last_used_at, revoked_at (never the token itself)."""
        return self._accounts().list_tokens(self.access.studio_for(request).owner_id)

    def revoke_api_token(self, token_id: str, request: gr.Request = None) -> dict:
        """Revoke one of your API tokens; every session it opened ends with it."""
        revoked = self._accounts().revoke_token(self.access.studio_for(request).owner_id, token_id)
        self.access.token_revoked(revoked["id"])
        return revoked

    def _accounts(self) -> Accounts:
        if self.access.accounts is None:
            raise InputError("This studio runs without accounts: API calls need no token.")
        return self.access.accounts

    def set_preferred_model(self, model_id: str, request: gr.Request = None) -> dict:
        """The virtual model the studio preselects for you."""
        return self.access.studio_for(request).set_preferred_model(model_id)

    def virtual_models(self, request: gr.Request = None) -> list[dict]:
        """The virtual models, with whether each can be used here and, if not, why."""
        return self.access.studio_for(request).virtual_models()

    def marketplaces(self, request: gr.Request = None) -> list[dict]:
        """The marketplace presets: key, name, aspect ratio and exact pixel size."""
        return [vars(preset) for preset in MARKETPLACES.values()]

    ENDPOINTS = ("upload_garment", "segment_garment", "refine_garment", "update_garment", "generate",
                 "rerun_generation", "cancel_generation", "generation", "list_garments", "list_generations",
                 "set_favorite", "download", "export_garment", "delete_garment", "delete_account", "usage",
                 "create_api_token", "list_api_tokens", "revoke_api_token", "set_preferred_model", "virtual_models",
                 "marketplaces")
    GPU_ENDPOINTS = ("generate", "rerun_generation")


UPLOAD_AS_FILE = ('Send the photo itself as a file (with gradio_client: handle_file("photo.jpg")); '
                  "a path on the server is not accepted.")


def _file_path_and_name(photo: Any) -> tuple[str, str | None]:
    """The uploaded file's path and original name. Only a file the caller uploaded (in Gradio's upload folder) is
    accepted: a bare path, or a dict without Gradio's file marker, could otherwise name any file on the server."""
    if isinstance(photo, FileData):
        path, name = photo.path, photo.orig_name
    elif isinstance(photo, dict):
        path, name = photo.get("path"), photo.get("orig_name")
    else:
        raise InputError(UPLOAD_AS_FILE)
    if not isinstance(path, str) or not _uploaded_by_the_caller(path):
        raise InputError(UPLOAD_AS_FILE)
    return path, name if isinstance(name, str) else None


def _uploaded_by_the_caller(path: str) -> bool:
    folder = os.path.realpath(gradio_upload_folder())
    try:
        real = os.path.realpath(path)
        return os.path.commonpath([real, folder]) == folder and real != folder and os.path.isfile(real)
    except (ValueError, OSError):  # a NUL byte, or a path on another drive
        return False


def export_for_download(studio: Studio, served: ServedFiles, garment_id: str, favorites_only: bool) -> Path:
    """The garment's export zip, written where deleting the garment will find it (and Gradio's copy of it)."""
    garment_id = studio.get_garment(garment_id)["id"]  # the stored id (a path part below), or NotFoundError
    folder = served.export_folder(studio.owner_id, garment_id)
    path = studio.export_garment(garment_id, favorites_only, folder)
    served.served(studio.owner_id, garment_id, path)
    return path


def delete_garment(studio: Studio, served: ServedFiles, garment_id: str) -> dict:
    """Deletes the garment and everything Gradio still holds of it: its upload, and the copies of its photos,
    previews and exports it served."""
    garment_id = studio.get_garment(garment_id)["id"]  # the stored id (a path part below), or NotFoundError
    stored = digests(studio.stored_files(garment_id))
    deleted = studio.delete_garment(garment_id)
    served.forget_garment(studio.owner_id, garment_id, stored)
    return deleted


def delete_account(access: Access, studio: Studio, served: ServedFiles) -> dict:
    """Deletes the seller's account and everything of it, served copies included, and ends all their sessions."""
    owner_id = studio.owner_id
    stored = digests(studio.stored_files())
    deleted = studio.delete_account()
    served.forget_owner(owner_id, stored)
    access.account_deleted(owner_id)
    return deleted


# -- the UI ----------------------------------------------------------------------------------------


def _model_cards_html(models: list[dict]) -> str:
    """The model cards, with each reason a model is unavailable said once above them (it is usually the same for
    every persona: the on-model weights are missing), and a short "Unavailable" tag on the cards themselves."""
    reasons: dict[str, list[str]] = {}
    for model in models:
        if not model["available"]:
            reasons.setdefault(model["unavailable_reason"] or "no reason given", []).append(model["name"])
    notes = [f'<p class="model-note"><b>{len(names)} model{"s" if len(names) > 1 else ""} unavailable</b> '
             f'({html.escape(", ".join(names))}): {html.escape(reason)}</p>' for reason, names in reasons.items()]
    cards = []
    for model in models:
        details = " · ".join(filter(None, [model["gender"], model["body_type"], model["ethnicity"]]))
        tags = ", ".join(model["style_tags"])
        state = "Available" if model["available"] else "Unavailable"
        css_class = "model-card" if model["available"] else "model-card unavailable"
        cards.append(f'<div class="{css_class}"><b>{model["name"]}</b> <code>{model["id"]}</code><br>'
                     f'{details}<div class="tags">{tags}</div><div class="tags">{state}</div></div>')
    return f'{"".join(notes)}<div class="model-cards">{"".join(cards)}</div>'


def _category_origin(garment: dict) -> str:
    source = garment.get("category_source")
    if source == "clip" and garment.get("category_confidence") is not None:
        return f"CLIP ({garment['category_confidence']:.0%} sure)"
    return {"user": "you", "heuristic": "the shape heuristic", None: "—"}.get(source, source)


def _garment_choices(studio: Studio) -> list[tuple[str, str]]:
    choices = []
    for garment in studio.list_garments(limit=200):
        label = f"{garment['original_filename'] or 'photo'} · {garment['category'] or '?'} · {garment['created_at'][:16]}"
        choices.append((label, garment["id"]))
    return choices


def _gallery_items(studio: Studio, outputs: list[dict]) -> list[tuple[str, str]]:
    items = []
    for output in outputs:
        star = "★ " if output["is_favorite"] else ""
        where = MARKETPLACES[output["marketplace"]].name if output["marketplace"] else output["aspect_ratio"]
        seed = f" · seed {output['seed']}" if output.get("seed") is not None else ""
        warning = " · ⚠ colour may differ from the item" if output.get("fidelity_flagged") else ""
        items.append((str(studio.file_path(output["image_url"])),
                      f"{star}{where} · {output['width']}×{output['height']}{seed}{warning}"))
    return items


class StudioBlocks(gr.Blocks):
    """`gr.Blocks` whose `launch()` always applies the studio's launch options, so the module-level `demo` is as
    safe as `serve()` whoever launches it; arguments given to `launch()` still win."""

    launch_defaults: dict[str, Any] = {}

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        return super().launch(*args, **{**self.launch_defaults, **kwargs})


def create_demo(studio: Studio, access: Access | None = None) -> StudioBlocks:
    """The whole app: seller UI and public API, wired to `studio`, acting for whoever `access` says is calling."""
    access = access or Access(studio)
    served = ServedFiles(studio.settings.data_dir / "served")
    api = StudioAPI(access, served)
    models = studio.virtual_models()
    model_choices = [(f"{m['name']} ({m['id']})", m["id"]) for m in models if m["available"]]
    status = studio.backend_status()

    # Gradio's cached copies of uploads and served files go an hour after their last use (deletions remove a
    # garment's at once): what a seller has not turned into a garment is not kept.
    with StudioBlocks(title="Resell Studio", delete_cache=(CACHE_SWEEP_S, CACHE_KEEP_S)) as demo:
        gr.Markdown("# Resell Studio\nPhotograph a garment on the floor, a bed or a hanger; get clean photos for "
                    "every marketplace.")
        if access.mode == "password":
            gr.Markdown("[Sign out](logout)")
        elif access.mode == "huggingface":
            gr.LoginButton()
        gr.Markdown(f"<small>{status['segmentation']}<br>{status['category']}<br>{status['generation']}</small>")
        garment_id = gr.State("")
        compare_pickers: dict[str, gr.Dropdown] = {}
        compare_galleries: dict[str, gr.Gallery] = {}
        compare_details: dict[str, gr.Markdown] = {}
        clicks = gr.State([])
        output_ids = gr.State([])
        selected_output = gr.State("")

        with gr.Tabs() as tabs:
            with gr.Tab("Studio", id="studio"):
                with gr.Row():
                    with gr.Column(scale=1):
                        uploads = gr.File(label="Garment photos (JPEG, PNG, WebP, HEIC)", file_count="multiple",
                                          file_types=["image", ".heic", ".heif"], type="filepath")
                        upload_button = gr.Button("Upload and cut out", variant="primary")
                        garment_picker = gr.Dropdown(label="Garment", choices=[], interactive=True)
                    with gr.Column(scale=2):
                        with gr.Row():
                            original_view = gr.Image(label="Original", interactive=False, format="jpeg", height=360)
                            cutout_view = gr.Image(label="Cut-out (click to refine)", interactive=False,
                                                   format="jpeg", height=360)
                        garment_status = gr.Markdown()
                        with gr.Row():
                            click_mode = gr.Radio(["garment", "background"], value="garment",
                                                  label="A click on the cut-out marks", scale=2)
                            undo_button = gr.Button("Undo click", size="sm")
                            reset_button = gr.Button("Reset clicks", size="sm")
                            accept_button = gr.Button("Save cut-out", size="sm", variant="primary")
                with gr.Row():
                    category = gr.Dropdown(label="Category", choices=list(CATEGORIES), interactive=True)
                    color_name = gr.Textbox(label="Colour name", placeholder="navy")
                    color_hex = gr.ColorPicker(label="Colour")
                    with gr.Column():
                        save_button = gr.Button("Save category and colour")
                        resegment_button = gr.Button("Cut out again")

                gr.Markdown("### Virtual models")
                gr.HTML(_model_cards_html(models))
                with gr.Row():
                    with gr.Column():
                        model_picker = gr.CheckboxGroup(label="Models to use", choices=model_choices, value=[])
                        default_model_button = gr.Button("Preselect the first chosen model next time", size="sm")
                    ratio_picker = gr.CheckboxGroup(label="Aspect ratios", choices=list(ASPECT_RATIOS),
                                                    value=list(DEFAULT_ASPECT_RATIOS))
                    marketplace_picker = gr.CheckboxGroup(
                        label="Marketplace sizes",
                        choices=[(f"{p.name} {p.width}×{p.height}", p.key) for p in MARKETPLACES.values()])
                with gr.Row():
                    background = gr.Dropdown(label="Background", choices=list(BACKGROUNDS), value=DEFAULT_BACKGROUND)
                    file_format = gr.Radio(label="File format", choices=list(FILE_FORMATS), value="jpeg")
                    generate_button = gr.Button("Generate photos", variant="primary", scale=2)
                    cancel_button = gr.Button("Cancel", variant="stop", scale=1)
                with gr.Accordion("Prompt tuning (on-model photos)", open=False):
                    gr.Markdown("Empty fields, seed -1, steps 0, guidance -1 and size 0 use the model card's and the "
                                "model family's defaults. *Load* fills the panel from a past generation of this "
                                "garment; *Generate photos* then runs it again with your changes.")
                    with gr.Row():
                        past_runs = gr.Dropdown(label="Past generation", choices=[], scale=3)
                        load_button = gr.Button("Load its parameters", scale=1)
                    prompt_box = gr.Textbox(label="Prompt", lines=2, placeholder="built from the card, category and colour")
                    negative_box = gr.Textbox(label="Negative prompt", lines=2, placeholder="the card's default")
                    with gr.Row():
                        batch_size = gr.Slider(1, 4, value=1, step=1, label="Batch size")
                        seed_box = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                        steps_box = gr.Number(value=0, precision=0, label="Steps (0: default)")
                        guidance_box = gr.Number(value=-1, label="Guidance (-1: default)")
                    with gr.Row():
                        ip_scale = gr.Slider(0, 2, value=0.7, step=0.05, label="IP-Adapter scale (garment)")
                        control_scale = gr.Slider(0, 2, value=0.8, step=0.05, label="ControlNet scale (pose)")
                        width_box = gr.Number(value=0, precision=0, label="Width (0: default)")
                        height_box = gr.Number(value=0, precision=0, label="Height (0: default)")
                        pose_box = gr.Textbox(label="Pose name", placeholder="best for the category")
                    rerun_of = gr.State("")
                job_details = gr.Markdown()
                gallery = gr.Gallery(label="Results", columns=4, height=420, format="jpeg", allow_preview=True)
                with gr.Row():
                    favorite_button = gr.Button("☆ Favourite", interactive=False)
                    download_button = gr.DownloadButton("Download", interactive=False)
                    export_button = gr.Button("Export all (zip, real cut-out first)")
                    output_info = gr.Markdown()
                # below the buttons, not beside them: hidden until there is a zip, then full width and short
                export_file = gr.File(label="Export", interactive=False, visible=False)

            with gr.Tab("Compare", id="compare") as compare_tab:
                gr.Markdown("Two generations of any garment side by side, with every parameter they were run with.")
                with gr.Row():
                    for side in ("A", "B"):
                        with gr.Column():
                            compare_pickers[side] = gr.Dropdown(label=f"Run {side}", choices=[])
                            compare_galleries[side] = gr.Gallery(label=f"Run {side}", columns=2, height=360,
                                                                 format="jpeg")
                            compare_details[side] = gr.Markdown()

            with gr.Tab("Account", id="account") as account_tab:
                usage_view = gr.Markdown()
                gr.Markdown("### API tokens\nPrograms sign in with your email and a token: "
                            "`Client(url, auth=(email, token))`. A token is shown once; revoke it when done.")
                with gr.Row():
                    token_name = gr.Textbox(label="Token name", placeholder="my listing script", scale=2)
                    create_token_button = gr.Button("Create token")
                new_token = gr.Textbox(label="New token (copy it now)", interactive=False)
                tokens_table = gr.Dataframe(label="Your tokens", interactive=False)
                with gr.Row():
                    revoke_choice = gr.Dropdown(label="Token to revoke", choices=[], scale=2)
                    revoke_button = gr.Button("Revoke")
                gr.Markdown("### Delete your account\nDeleting your account removes every garment, job, photo and "
                            "file, for good.")
                with gr.Row():
                    confirm_box = gr.Textbox(label='Type DELETE to confirm', scale=2)
                    delete_account_button = gr.Button("Delete my account and everything in it", variant="stop")

            with gr.Tab("History", id="history") as history_tab:
                with gr.Row():
                    refresh_button = gr.Button("Refresh")
                    delete_garment_button = gr.Button("Delete the open garment and its photos", variant="stop")
                garments_table = gr.Dataframe(label="Garments (select a row to open it)", interactive=False, wrap=True)
                generations_table = gr.Dataframe(label="Generations", interactive=False, wrap=True)

        # -- handlers (UI only; the API has its own endpoints below) ------------------------------

        def show_garment(studio: Studio, chosen_id: str):
            if not chosen_id:
                return ("", None, None, None, "", None, "Upload a photo to start.", [], [], "", [],
                        gr.File(value=None, visible=False))
            garment = studio.get_garment(chosen_id)
            image = studio.garment_image(chosen_id)
            overlay = (served.preview(studio.owner_id, chosen_id, mask_overlay(image, studio.garment_mask(chosen_id)),
                                      "cut-out") if garment["mask_image_url"] else None)
            if garment["status"] == "failed":
                message = f"**Cut-out failed:** {garment['error_message']}"
            else:
                message = (f"Cut-out by **{garment['segmentation_backend'] or '—'}** · status **{garment['status']}**"
                           f" · {garment['width']}×{garment['height']} px · category from "
                           f"**{_category_origin(garment)}**")
            latest = studio.list_generations(chosen_id, limit=1)
            generation = studio.get_generation(latest[0]["id"]) if latest else {"outputs": []}
            return (chosen_id, served.preview(studio.owner_id, chosen_id, thumbnail(image), "photo"), overlay, garment["category"], garment["detected_color"] or "",
                    garment["detected_color_hex"] or None, message, _gallery_items(studio, generation["outputs"]),
                    [o["id"] for o in generation["outputs"]], "", [], gr.File(value=None, visible=False))

        garment_outputs = [garment_id, original_view, cutout_view, category, color_name, color_hex, garment_status,
                           gallery, output_ids, selected_output, clicks, export_file]  # a shown export is stale

        def on_upload(paths: list[str] | None, request: gr.Request):
            """A refusal is said once, in a warning, and the upload box is emptied for the next try. Nothing is
            raised: a raised error would also mark this event's outputs (the upload box, the garment picker) with
            "Error" badges and leave the refused file in the box. The /upload_garment endpoint still raises."""
            studio = access.studio_for(request)
            if not paths:
                gr.Warning("Choose one or more photos first.")
                return gr.Dropdown(), None
            last_id, refused = "", []
            for path in paths:
                try:
                    last_id = studio.upload_garment(path)["id"]
                except StudioError as error:  # the toast renders HTML: a file name is shown as written
                    refused.append(html.escape(f"{path.rsplit('/', 1)[-1]}: {error}", quote=False))
            if not last_id:
                gr.Warning("No photo could be used. " + "<br>".join(refused))
                return gr.Dropdown(), None
            for message in refused:  # Gradio shows these together, in one "Warning (n)" toast
                gr.Warning(message)
            return gr.Dropdown(choices=_garment_choices(studio), value=last_id), None

        def on_save_attributes(chosen_id: str, new_category: str, new_name: str, new_hex: str, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Choose a garment first.")
            garment = studio.get_garment(chosen_id)
            hex_changed = bool(new_hex) and new_hex.lower() != (garment["detected_color_hex"] or "")
            name_changed = (new_name or "") != (garment["detected_color"] or "")
            studio.update_garment(chosen_id, new_category, new_name if name_changed else None,
                                  new_hex if hex_changed else None)
            gr.Info("Saved.")
            return show_garment(studio, chosen_id)

        def on_resegment(chosen_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Choose a garment first.")
            garment = studio.segment_garment(chosen_id)
            if garment["status"] == "failed":
                gr.Warning(garment["error_message"])
            return show_garment(studio, chosen_id)

        def refinement_preview(studio: Studio, chosen_id: str, points: list):
            image = studio.garment_image(chosen_id)
            if points:
                overlay = mask_overlay(image, studio.preview_refinement(chosen_id, points).mask, points)
            elif studio.get_garment(chosen_id)["mask_image_url"]:
                overlay = mask_overlay(image, studio.garment_mask(chosen_id))
            else:
                return None
            return served.preview(studio.owner_id, chosen_id, overlay, "cut-out")

        def on_cutout_click(chosen_id: str, points: list, mode: str, event: gr.SelectData, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Upload or choose a garment first.")
            garment = studio.get_garment(chosen_id)
            scale = preview_scale((garment["width"], garment["height"]))
            x = min(event.index[0] / scale, garment["width"] - 1)
            y = min(event.index[1] / scale, garment["height"] - 1)
            points = [*points, [round(x, 1), round(y, 1), 1 if mode == "garment" else 0]]
            return refinement_preview(studio, chosen_id, points), points

        def on_undo_click(chosen_id: str, points: list, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Upload or choose a garment first.")
            points = points[:-1]
            return refinement_preview(studio, chosen_id, points), points

        def on_reset_clicks(chosen_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Upload or choose a garment first.")
            return refinement_preview(studio, chosen_id, []), []

        def on_accept_clicks(chosen_id: str, points: list, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id or not points:
                raise gr.Error("Click on the cut-out first: a click marks garment or background, as chosen above.")
            studio.refine_garment(chosen_id, points)
            gr.Info("Cut-out saved.")
            return show_garment(studio, chosen_id)

        def on_generate(chosen_id: str, model_ids: list[str], ratios: list[str], marketplaces: list[str],
                        background_name: str, fmt: str, prompt: str, negative: str, batch: int, seed: float,
                        steps: float, guidance: float, ip: float, control: float, width: float, height: float,
                        pose: str, repeat_of: str, request: gr.Request, progress=gr.Progress()):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Upload or choose a garment first.")
            if not model_ids:
                raise gr.Error("Pick at least one virtual model.")
            options = on_model_options(prompt, negative, batch, seed, steps, guidance, ip, control, width, height,
                                       pose)
            jobs = [studio.generate(chosen_id, model_id, ratios, marketplaces, background_name, fmt,
                                    options=options, rerun_of=repeat_of or None) for model_id in model_ids]
            finished = [_wait_with_progress(studio, job["id"], progress, number, len(jobs))
                        for number, job in enumerate(jobs)]
            for job in finished:
                if job["status"] == "failed":
                    gr.Warning(f"A generation failed: {job['error_message']}")
            items = [item for job in finished for item in _gallery_items(studio, job["outputs"])]
            ids = [output["id"] for job in finished for output in job["outputs"]]
            details = "\n\n".join([*(_job_details(job) for job in finished), _usage_markdown(studio.usage())])
            return items, ids, "", details, "", _past_runs(studio, chosen_id)

        def on_cancel(chosen_id: str, request: gr.Request):
            studio = access.studio_for(request)
            running = [job for job in studio.list_generations(chosen_id or None, limit=50)
                       if job["status"] in ("pending", "processing")] if chosen_id else []
            for job in running:
                studio.cancel_generation(job["id"])
            gr.Info(f"Cancelled {len(running)} job(s)." if running else "Nothing is running for this garment.")

        def on_usage(request: gr.Request):
            studio = access.studio_for(request)
            return (_usage_markdown(studio.usage()), *token_views(studio))

        def token_views(studio: Studio):
            if access.accounts is None:
                return gr.Dataframe(value=None), gr.Dropdown(choices=[])
            tokens = access.accounts.list_tokens(studio.owner_id)
            rows = [[t["name"], t["created_at"][:19], (t["last_used_at"] or "")[:19], "revoked" if t["revoked_at"]
                     else "live"] for t in tokens]
            live = [(f"{t['name']} ({t['created_at'][:10]})", t["id"]) for t in tokens if not t["revoked_at"]]
            return (gr.Dataframe(value=rows or None, headers=["name", "created", "last used", "state"]),
                    gr.Dropdown(choices=live, value=None))

        def on_create_token(name: str, request: gr.Request):
            studio = access.studio_for(request)
            if access.accounts is None:
                raise gr.Error("This studio runs without accounts: API calls need no token.")
            token = access.accounts.create_token(studio.owner_id, name)
            return (token["token"], *token_views(studio))

        def on_revoke_token(token_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if access.accounts is None or not token_id:
                raise gr.Error("Choose a token to revoke.")
            access.accounts.revoke_token(studio.owner_id, token_id)
            access.token_revoked(token_id)
            return token_views(studio)

        def on_delete_account(confirm: str, request: gr.Request):
            studio = access.studio_for(request)
            if confirm != "DELETE":
                raise gr.Error("Type DELETE in the box to confirm.")
            delete_account(access, studio, served)
            gr.Info("Your account and everything in it were deleted.")
            usage = ("Your account was deleted and you are signed out." if access.accounts
                     else _usage_markdown(studio.usage()))
            return usage, "", gr.Dropdown(choices=[], value=None)

        def on_delete_garment(chosen_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Open a garment first (select it in the table or the Studio tab).")
            delete_garment(studio, served, chosen_id)
            gr.Info("The garment and its photos were deleted.")
            return gr.Dropdown(choices=_garment_choices(studio), value=None)

        def on_preselect(model_ids: list[str], request: gr.Request):
            studio = access.studio_for(request)
            if not model_ids:
                raise gr.Error("Tick a model first.")
            studio.set_preferred_model(model_ids[0])
            gr.Info(f"{model_ids[0]} will be preselected.")

        def on_export(chosen_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if not chosen_id:
                raise gr.Error("Choose a garment first.")
            return gr.File(value=str(export_for_download(studio, served, chosen_id, False)), visible=True)

        def on_load_parameters(generation_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if not generation_id:
                raise gr.Error("Choose a past generation first.")
            job = studio.get_generation(generation_id)
            p = job["parameters"]
            if job["backend"] != "diffusion":
                raise gr.Error("That is a ghost generation: it has no prompt parameters to load.")
            return (p["prompt"], p["negative_prompt"], len(p["seeds"]), p["seeds"][0], p["steps"],
                    p["guidance_scale"], p["ip_adapter_scale"], p["controlnet_scale"], p["width"], p["height"],
                    p["pose"], generation_id, gr.CheckboxGroup(value=[job["target_model_id"]]))

        def on_compare(generation_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if not generation_id:
                return [], ""
            job = studio.get_generation(generation_id)
            return _gallery_items(studio, job["outputs"]), _job_details(job)

        def compare_choices(request: gr.Request):
            studio = access.studio_for(request)
            choices = [(_run_label(job), job["id"]) for job in studio.list_generations(limit=200)]
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices)

        def on_select_output(ids: list[str], event: gr.SelectData, request: gr.Request):
            studio = access.studio_for(request)
            output_id = ids[event.index] if event.index is not None and event.index < len(ids) else ""
            return output_controls(studio, output_id)

        def output_controls(studio: Studio, output_id: str):
            if not output_id:
                return ("", gr.Button("☆ Favourite", interactive=False),
                        gr.DownloadButton("Download", value=None, interactive=False), "")
            output = studio.get_output(output_id)
            path = studio.file_path(output["image_url"])
            star = "★ Favourite" if output["is_favorite"] else "☆ Favourite"
            info = f"{output['width']}×{output['height']} px · downloaded {output['download_count']}×"
            return (output_id, gr.Button(star, interactive=True),
                    gr.DownloadButton("Download", value=str(path), interactive=True), info)

        def on_toggle_favorite(output_id: str, ids: list[str], request: gr.Request):
            studio = access.studio_for(request)
            if not output_id:
                raise gr.Error("Select an image in the results first.")
            output = studio.get_output(output_id)
            studio.set_favorite(output_id, not output["is_favorite"])
            outputs = [studio.get_output(each) for each in ids]
            gallery_update = gr.Gallery(value=_gallery_items(studio, outputs), selected_index=ids.index(output_id))
            return (gallery_update, *output_controls(studio, output_id))

        def on_record_download(output_id: str, request: gr.Request):
            studio = access.studio_for(request)
            if output_id:
                studio.download(output_id)
            return output_controls(studio, output_id)[3]

        def on_history(request: gr.Request):
            studio = access.studio_for(request)
            garments = studio.list_garments(limit=200)
            generations = studio.list_generations(limit=200)
            garment_rows = [[g["id"], g["created_at"][:19], g["original_filename"], g["category"],
                             g["detected_color"], g["status"]] for g in garments]
            generation_rows = [[g["id"], g["garment_id"], g["target_model_id"], g["status"], g["created_at"][:19],
                                g["error_message"] or ""] for g in generations]
            return (gr.Dataframe(value=garment_rows or None,
                                 headers=["id", "uploaded", "file", "category", "colour", "status"]),
                    gr.Dataframe(value=generation_rows or None,
                                 headers=["id", "garment", "model", "status", "created", "error"]))

        def on_open_from_history(event: gr.SelectData, request: gr.Request):
            studio = access.studio_for(request)
            row = event.row_value or []
            if not row:
                return gr.Dropdown(), gr.Tabs()
            return gr.Dropdown(choices=_garment_choices(studio), value=row[0]), gr.Tabs(selected="studio")

        def on_show_garment(chosen_id: str, request: gr.Request):
            return show_garment(access.studio_for(request), chosen_id)

        def on_output_controls(output_id: str, request: gr.Request):
            return output_controls(access.studio_for(request), output_id)

        def on_past_runs(chosen_id: str, request: gr.Request):
            return _past_runs(access.studio_for(request), chosen_id)

        def on_garment_labels(chosen_id: str, request: gr.Request):
            """The picker's labels again (they show the category), after a save, a new cut-out or a refinement."""
            studio = access.studio_for(request)
            return gr.Dropdown(choices=_garment_choices(studio), value=chosen_id or None)

        def on_page_load(request: gr.Request):
            studio = access.studio_for(request)
            return gr.Dropdown(choices=_garment_choices(studio), value=None), gr.CheckboxGroup(
                value=_preselected_models(studio, studio.virtual_models()))

        private = {"api_visibility": "private"}
        ui = explained
        upload_button.click(ui(on_upload), uploads, [garment_picker, uploads], **private)
        garment_picker.change(ui(on_show_garment), garment_picker, garment_outputs, **private)
        save_button.click(ui(on_save_attributes), [garment_id, category, color_name, color_hex], garment_outputs,
                          **private).success(ui(on_garment_labels), garment_id, garment_picker, **private)
        resegment_button.click(ui(on_resegment), garment_id, garment_outputs, **private).success(
            ui(on_garment_labels), garment_id, garment_picker, **private)
        cutout_view.select(ui(on_cutout_click), [garment_id, clicks, click_mode], [cutout_view, clicks], **private)
        undo_button.click(ui(on_undo_click), [garment_id, clicks], [cutout_view, clicks], **private)
        reset_button.click(ui(on_reset_clicks), garment_id, [cutout_view, clicks], **private)
        accept_button.click(ui(on_accept_clicks), [garment_id, clicks], garment_outputs, **private).success(
            ui(on_garment_labels), garment_id, garment_picker, **private)
        tuning = [prompt_box, negative_box, batch_size, seed_box, steps_box, guidance_box, ip_scale, control_scale,
                  width_box, height_box, pose_box, rerun_of]
        generate_button.click(
            ui(on_generate), [garment_id, model_picker, ratio_picker, marketplace_picker, background, file_format,
                              *tuning],
            [gallery, output_ids, selected_output, job_details, rerun_of, past_runs],
            concurrency_id="gpu", concurrency_limit=1, **private,
        ).then(ui(on_output_controls), selected_output, [selected_output, favorite_button, download_button,
                                                       output_info], **private)
        cancel_button.click(ui(on_cancel), garment_id, None, queue=False, **private)
        account_tab.select(ui(on_usage), None, [usage_view, tokens_table, revoke_choice], **private)
        create_token_button.click(ui(on_create_token), token_name, [new_token, tokens_table, revoke_choice],
                                  **private)
        revoke_button.click(ui(on_revoke_token), revoke_choice, [tokens_table, revoke_choice], **private)
        delete_account_button.click(ui(on_delete_account), confirm_box, [usage_view, confirm_box, garment_picker],
                                    **private)
        delete_garment_button.click(ui(on_delete_garment), garment_id, garment_picker, **private).then(
            ui(on_history), None, [garments_table, generations_table], **private)
        default_model_button.click(ui(on_preselect), model_picker, None, **private)
        export_button.click(ui(on_export), garment_id, export_file, **private)
        load_button.click(ui(on_load_parameters), past_runs, [*tuning, model_picker], **private)
        garment_picker.change(ui(on_past_runs), garment_picker, past_runs, **private)
        demo.load(ui(on_page_load), None, [garment_picker, model_picker], **private)
        compare_tab.select(ui(compare_choices), None, [compare_pickers["A"], compare_pickers["B"]], **private)
        for side in ("A", "B"):
            compare_pickers[side].change(ui(on_compare), compare_pickers[side],
                                         [compare_galleries[side], compare_details[side]], **private)
        gallery.select(ui(on_select_output), output_ids, [selected_output, favorite_button, download_button,
                                                        output_info], **private)
        favorite_button.click(ui(on_toggle_favorite), [selected_output, output_ids],
                              [gallery, selected_output, favorite_button, download_button, output_info], **private)
        download_button.click(ui(on_record_download), selected_output, output_info, **private)
        refresh_button.click(ui(on_history), None, [garments_table, generations_table], **private)
        history_tab.select(ui(on_history), None, [garments_table, generations_table], **private)
        garments_table.select(ui(on_open_from_history), None, [garment_picker, tabs], **private)

        for name in StudioAPI.ENDPOINTS:
            gpu = {"concurrency_id": "gpu", "concurrency_limit": 1} if name in StudioAPI.GPU_ENDPOINTS else {}
            gr.api(explained(getattr(api, name)), api_name=name, **({"concurrency_limit": 4} | gpu))

    demo.launch_defaults = launch_options(studio, access)
    return demo


def _usage_markdown(usage: dict) -> str:
    plan = usage["plan"]
    return (f"**{plan['name'].capitalize()} plan** · generations today {usage['generations_today']} of "
            f"{plan['generations_per_day']} (resets in {usage['resets_in']}) · jobs running {usage['active_jobs']} "
            f"of {plan['concurrent_jobs']} · storage {usage['storage_mb']} of {plan['storage_mb']} MB · up to "
            f"{plan['max_batch_size']} images per job and {plan['max_long_side']} px")


def _preselected_models(studio: Studio, models: list[dict]) -> list[str]:
    """The seller's preferred model when it can run here, else the ghost."""
    available = {model["id"] for model in models if model["available"]}
    preferred = studio.preferred_model_id()
    return [preferred] if preferred in available else [GHOST_MODEL_ID] if GHOST_MODEL_ID in available else []


def _run_label(job: dict) -> str:
    return f"{job['created_at'][:19]} · {job['target_model_id']} · {job['status']} · {job['id'][:8]}"


def _past_runs(studio: Studio, garment_id: str) -> gr.Dropdown:
    if not garment_id:
        return gr.Dropdown(choices=[], value=None)
    return gr.Dropdown(choices=[(_run_label(job), job["id"]) for job in studio.list_generations(garment_id)],
                       value=None)


def _job_details(job: dict) -> str:
    """Everything a run was made with, for reading and for repeating it."""
    lines = [f"**{job['target_model_id']}** · {job['backend']} · {job['status']}"
             + (f" · re-run of `{job['rerun_of'][:8]}`" if job.get("rerun_of") else "")]
    if job.get("error_message"):
        lines.append(f"Error: {job['error_message']}")
    p = job["parameters"]
    if job["backend"] == "diffusion":
        lines += [f"Prompt: `{job['prompt_used']}`", f"Negative prompt: `{job['negative_prompt']}`",
                  f"Seeds {p['seeds']} · {p['steps']} steps · guidance {p['guidance_scale']} · IP-Adapter "
                  f"{p['ip_adapter_scale']} · ControlNet {p['controlnet_scale']} · {p['width']}×{p['height']} · "
                  f"pose {p['pose']}",
                  "Models: " + ", ".join(f"{k} `{v}`" for k, v in job["model_ids"].items() if v)]
    else:
        lines.append(f"Background {p['background']} · {p['file_format']}")
    return "  \n".join(lines)


def _wait_with_progress(studio: Studio, generation_id: str, progress: gr.Progress, number: int, total: int) -> dict:
    while True:
        job = studio.get_generation(generation_id)
        if job["status"] in ("completed", "failed"):
            return job
        progress((number + job["progress"]) / total, desc=f"{job['progress_message']} ({number + 1}/{total})")
        time.sleep(POLL_SECONDS)


def launch_options(studio: Studio, access: Access | None = None) -> dict[str, Any]:
    """What `launch()` needs besides host and port: uploads no larger than a photo may be; without accounts the
    data directory's files may be served; with accounts every page, event, upload and API call needs a signed-in
    seller, and the sign-in guard (web.sign_in) owns sign-in and sign-out."""
    options: dict[str, Any] = {"css": CSS, "theme": gr.themes.Soft(), "max_file_size": MAX_UPLOAD_BYTES}
    if access is None or access.accounts is None:
        options["allowed_paths"] = [str(studio.settings.files_dir)]
        return options
    # No direct file URLs: a seller's files reach them only as copies their own calls return.
    options["app_kwargs"] = {"middleware": [Middleware(SignInGuard, access=access)]}
    if access.mode == "password":
        options.update(auth=refuse_outside_the_guard,
                       auth_message="Sign in with your Resell Studio email and password (or an API token).")
    return options


def build(settings: Settings) -> tuple[Studio, StudioBlocks]:
    """The studio and its app for `settings`, signing sellers in as `settings.auth` says: what every entry point
    (the CLI, `python app.py`, `gradio app.py`, the module-level `demo`) serves."""
    check_auth(settings.auth)  # before anything is opened: an unsafe mode never serves
    studio = Studio.open(settings)
    try:
        access = Access(studio, settings.auth)
        demo = create_demo(studio, access)
    except BaseException:
        studio.close()
        raise
    demo.queue(default_concurrency_limit=4)
    if settings.auth == "none" and os.environ.get("SPACE_ID"):
        log.warning("This Space serves without sign-in (STUDIO_AUTH=none): every visitor shares one studio.")
    return studio, demo


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serves until interrupted. Without a host or port, Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
    (which Spaces set) or 127.0.0.1:7860 are used."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST
    port = port or int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    studio, demo = build(settings)
    try:
        demo.launch(server_name=host, server_port=port)
    finally:
        studio.close()


def __getattr__(name: str) -> Any:
    # `demo` is what Spaces and `gradio app.py` look for; built on first access, not at import.
    if name == "demo":
        global demo
        _, demo = build(Settings.from_env())
        return demo
    raise AttributeError(name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    try:
        serve(Settings.from_env())
    except StudioError as error:
        raise SystemExit(f"resell-studio: error: {error}") from None
