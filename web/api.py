"""The public API: one typed method per endpoint, each a thin call to the studio service. `app.py` registers them
with `gr.api`; the UI reuses the few actions that also clean up what Gradio serves (exports, deletions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import FileData
from gradio.utils import get_upload_folder as gradio_upload_folder

from pipeline.accounts import Accounts
from pipeline.errors import InputError
from pipeline.on_model import on_model_options
from pipeline.presets import DEFAULT_BACKGROUND, MARKETPLACES
from pipeline.studio import GHOST_MODEL_ID, Studio
from web.access import Access
from web.served_files import CLOSET, ServedFiles, digests


class StudioAPI:
    """The public API: one typed method per endpoint, returning plain JSON (and files from /download)."""

    def __init__(self, access: Access, served: ServedFiles | None = None):
        self.access = access
        self.served = served or ServedFiles(access.studio.settings.data_dir / "served")

    def upload_garment(self, photo: FileData, segment: bool = True, backend: str = "", request: gr.Request = None) -> dict:
        """Upload a garment photo (JPEG, PNG, WebP or HEIC). Cuts the garment out unless `segment` is false
        (backend auto, fused, classic or sam; empty for the studio's setting) and returns the garment: id, status,
        category, category_source, category_confidence, detected_color, detected_color_hex, secondary_color,
        pattern, garment_type, title, mask_image_url, segmentation_backend, ..."""
        path, name = _file_path_and_name(photo)
        return self.access.studio_for(request).upload_garment(path, filename=name, segment=bool(segment), backend=backend or None)

    def upload_garments(self, photos: list[FileData], segment: bool = True, backend: str = "",
                        request: gr.Request = None) -> dict:
        """Upload many garment photos at once (a closet). Returns {"garments": [...], "refused": [{"filename",
        "error"}]}: a photo that cannot be used does not stop the others."""
        studio = self.access.studio_for(request)
        if not isinstance(photos, list) or not photos:
            raise InputError("Send a list of photos: [handle_file('a.jpg'), handle_file('b.jpg')].")
        files = [_file_path_and_name(photo) for photo in photos]
        return studio.upload_garments([path for path, _ in files], [name for _, name in files],
                                      segment=bool(segment), backend=backend or None)

    def segment_garment(self, garment_id: str, backend: str = "", request: gr.Request = None) -> dict:
        """Cut the garment out again (backend: auto, fused, classic or sam; empty for the studio's setting)."""
        return self.access.studio_for(request).segment_garment(garment_id, backend or None)

    def refine_garment(self, garment_id: str, points: list[list[float]], backend: str = "", request: gr.Request = None) -> dict:
        """Refine the cut-out with clicks and store it: points are [x, y, label] in photo pixels, label 1 for
        garment and 0 for background. Returns the garment, with the points in `mask_points`."""
        return self.access.studio_for(request).refine_garment(garment_id, points, backend or None)

    def update_garment(self, garment_id: str, category: str = "", color_name: str = "", color_hex: str = "",
                       secondary_color: str = "", pattern: str = "", title: str = "",
                       use_suggested_title: bool = False, request: gr.Request = None) -> dict:
        """Correct what the studio detected: category (top, bottom, dress, outerwear), colour (name and/or hex),
        secondary_color (a name, or "none"), pattern (solid, striped, checked, floral, print, graphic) and the
        listing title. Empty values are left as they are; what you set is kept when the garment is cut out again.
        `use_suggested_title` drops your own title for the one the studio suggests from the attributes."""
        return self.access.studio_for(request).update_garment(
            garment_id, category or None, color_name or None, color_hex or None, secondary_color or None,
            pattern or None, "" if use_suggested_title else (title or None))

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

    def generate_closet(self, model_id: str = GHOST_MODEL_ID, marketplaces: list[str] | None = None,
                        aspect_ratios: list[str] | None = None, background: str = DEFAULT_BACKGROUND,
                        file_format: str = "jpeg", garment_ids: list[str] | None = None, wait: bool = True,
                        request: gr.Request = None) -> dict:
        """Make photos of every cut-out garment (or of `garment_ids`) for the marketplaces: one job per garment,
        within your plan's limits. Returns {"jobs": [...], "skipped": [{"garment_id", "reason"}]}."""
        return self.access.studio_for(request).generate_closet(
            model_id, marketplaces or [], aspect_ratios or [], background, file_format,
            garment_ids=garment_ids or None, wait=bool(wait))

    def export_marketplace(self, marketplace: str, garment_ids: list[str] | None = None,
                           request: gr.Request = None) -> FileData:
        """One zip for a marketplace: a folder per garment with its photos for that marketplace (the real photo
        first, at most as many as the marketplace takes), named from the garment, and listing.csv."""
        studio = self.access.studio_for(request)
        path = export_marketplace_for_download(studio, self.served, marketplace, garment_ids or None)
        return FileData(path=str(path), orig_name=path.name)

    def set_preferred_marketplaces(self, marketplaces: list[str], request: gr.Request = None) -> list[str]:
        """The marketplaces the studio ticks for you (remembered)."""
        return self.access.studio_for(request).set_preferred_marketplaces(marketplaces or [])

    def list_favorites(self, limit: int = 100, request: gr.Request = None) -> list[dict]:
        """Your starred photos from every job, newest first (each with its garment_id)."""
        return self.access.studio_for(request).list_favorites(limit)

    def set_preferred_model(self, model_id: str, request: gr.Request = None) -> dict:
        """The virtual model the studio preselects for you."""
        return self.access.studio_for(request).set_preferred_model(model_id)

    def virtual_models(self, request: gr.Request = None) -> list[dict]:
        """The virtual models, with whether each can be used here and, if not, why."""
        return self.access.studio_for(request).virtual_models()

    def persona_photo(self, model_id: str, request: gr.Request = None) -> FileData:
        """The persona's reference photo that every on-model photo of your closet reuses (flux2-klein and
        qwen-edit families): made once from the card with the first on-model photo, or your own."""
        studio = self.access.studio_for(request)
        path = studio.file_path(studio.persona_photo(model_id)["image_url"])
        return FileData(path=str(path), orig_name=f"{model_id}-reference.png")

    def make_persona_photo(self, model_id: str, seed: int = -1, request: gr.Request = None) -> dict:
        """Make the persona's reference photo again: seed -1 is the card's own person, another seed another
        person. Replaces your own photo if you gave one. Needs the GPU."""
        return self.access.studio_for(request).make_persona_photo(model_id, None if seed is None or int(seed) < 0
                                                                  else int(seed))

    def set_persona_photo(self, model_id: str, photo: FileData, request: gr.Request = None) -> dict:
        """Use your own photo (of yourself or your model, full body) as the persona's reference; private to you."""
        path, _ = _file_path_and_name(photo)
        return self.access.studio_for(request).set_persona_photo(model_id, path)

    def forget_persona_photo(self, model_id: str, request: gr.Request = None) -> dict:
        """Drop the reference photo (yours or the made one); the next on-model photo makes one from the card."""
        self.access.studio_for(request).forget_persona_photo(model_id)
        return {"model_id": model_id, "forgotten": True}

    def marketplaces(self, request: gr.Request = None) -> list[dict]:
        """The marketplace presets: key, name, aspect ratio and exact pixel size."""
        return [vars(preset) for preset in MARKETPLACES.values()]

    ENDPOINTS = ("upload_garment", "upload_garments", "generate_closet", "export_marketplace",
                 "set_preferred_marketplaces", "list_favorites", "segment_garment", "refine_garment", "update_garment", "generate",
                 "rerun_generation", "cancel_generation", "generation", "list_garments", "list_generations",
                 "set_favorite", "download", "export_garment", "delete_garment", "delete_account", "usage",
                 "create_api_token", "list_api_tokens", "revoke_api_token", "set_preferred_model", "virtual_models",
                 "marketplaces", "persona_photo", "make_persona_photo", "set_persona_photo", "forget_persona_photo")
    GPU_ENDPOINTS = ("generate", "rerun_generation", "generate_closet", "make_persona_photo")


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


def export_marketplace_for_download(studio: Studio, served: ServedFiles, marketplace: str,
                                    garment_ids: list[str] | None = None) -> Path:
    """One marketplace's zip over the seller's garments, written where deleting any of them will find it."""
    folder = served.export_folder(studio.owner_id, CLOSET)
    path = studio.export_marketplace(marketplace, garment_ids or None, folder=folder)
    served.served(studio.owner_id, CLOSET, path)
    return path


def delete_garment(studio: Studio, served: ServedFiles, garment_id: str) -> dict:
    """Deletes the garment and everything Gradio still holds of it: its upload, and the copies of its photos,
    previews and exports it served."""
    garment_id = studio.get_garment(garment_id)["id"]  # the stored id (a path part below), or NotFoundError
    stored = digests(studio.stored_files(garment_id))
    deleted = studio.delete_garment(garment_id)
    served.forget_garment(studio.owner_id, garment_id, stored)
    served.forget_garment(studio.owner_id, CLOSET)  # marketplace zips may hold its photos
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
