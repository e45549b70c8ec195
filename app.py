"""Resell Studio's Gradio app: assembles the screens (ui/) and the public API (web/api.py), wired to the studio
service, and serves them.

`create_demo(studio)` builds everything; nothing heavy happens at import. `demo` is built on first access (for
Spaces and `gradio app.py`), and `python app.py` serves it like `resell-studio serve`.
"""

from __future__ import annotations

try:
    import spaces  # noqa: F401  (ZeroGPU: must be imported before anything touches CUDA)
except ImportError:
    pass

import logging
import os
import threading
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from pipeline.errors import StudioError
from pipeline.ingest import MAX_UPLOAD_BYTES
from pipeline.settings import DEFAULT_HOST, DEFAULT_PORT, Settings, check_auth
from pipeline.studio import Studio
from ui.account_tab import build_account_tab
from ui.closet_tab import build_closet_tab
from ui.common import CSS, UIContext
from ui.compare_tab import build_compare_tab
from ui.status import build_status
from ui.studio_tab import build_studio_tab
from web.access import Access
from web.api import UPLOAD_AS_FILE, StudioAPI  # noqa: F401  (UPLOAD_AS_FILE: the API's words, for tests)
from web.errors import explained
from web.served_files import ServedFiles
from web.sign_in import SignInGuard, refuse_outside_the_guard

log = logging.getLogger(__name__)

CACHE_SWEEP_S, CACHE_KEEP_S = 30 * 60, 60 * 60


class StudioBlocks(gr.Blocks):
    """`gr.Blocks` whose `launch()` always applies the studio's launch options, so the module-level `demo` is as
    safe as `serve()` whoever launches it; arguments given to `launch()` still win."""

    launch_defaults: dict[str, Any] = {}

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        return super().launch(*args, **{**self.launch_defaults, **kwargs})


def create_demo(studio: Studio, access: Access | None = None) -> StudioBlocks:
    """The whole app: the seller's screens and the public API, acting for whoever `access` says is calling."""
    access = access or Access(studio)
    ctx = UIContext(studio, access, ServedFiles(studio.settings.data_dir / "served"))
    # Gradio's cached copies of uploads and served files go an hour after their last use (deletions remove a
    # garment's at once): what a seller has not turned into a garment is not kept.
    with StudioBlocks(title="Resell Studio", delete_cache=(CACHE_SWEEP_S, CACHE_KEEP_S)) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("# Resell Studio")
            if access.mode == "password":
                gr.Button("Sign out", link="logout", size="sm", scale=0, min_width=90)
            elif access.mode == "huggingface":
                gr.LoginButton(size="sm", scale=0, min_width=90)
        gr.Markdown("Your garment photos in, listing photos out.", elem_classes="tagline")
        with gr.Tabs() as tabs:
            with gr.Tab("Studio", id="studio"):
                studio_tab = build_studio_tab(ctx, demo)
                build_status(studio)
            with gr.Tab("Closet", id="closet") as closet_tab:
                build_closet_tab(ctx, closet_tab, tabs, studio_tab)
            with gr.Tab("Compare", id="compare") as compare_tab:
                build_compare_tab(ctx, compare_tab)
            with gr.Tab("Account", id="account") as account_tab:
                build_account_tab(ctx, account_tab)
        api = StudioAPI(access, ctx.served)
        for name in StudioAPI.ENDPOINTS:
            gpu = {"concurrency_id": "gpu", "concurrency_limit": 1} if name in StudioAPI.GPU_ENDPOINTS else {}
            gr.api(explained(getattr(api, name)), api_name=name, **({"concurrency_limit": 4} | gpu))
    demo.launch_defaults = launch_options(studio, access)
    return demo


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
    # The models load while the page opens, not during the first seller's upload.
    threading.Thread(target=studio.warm_up, name="warm-up", daemon=True).start()
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
