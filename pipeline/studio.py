"""The studio service: every action of the UI, the API and the command line, in one place.

It runs the pipeline steps (ingest, cut-out, attributes, generation) and records each in storage. Methods
take and return plain values (ids, strings, dicts) so the Gradio layer only has to wire them.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import logging
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipeline.attributes import PALETTE, color_from_hex, parse_category
from pipeline.category_model import resolve_category_model
from pipeline.errors import (
    BackendUnavailableError,
    InputError,
    NotFoundError,
    QuotaExceededError,
    SegmentationError,
    StorageError,
    StudioError,
    storage_error,
)
from pipeline.diffusion import (
    DiffusionBackend,
    DiffusionModels,
    GenerationCancelled,
    load_diffusion_backend,
    models_from,
    required_weights,
)
from pipeline.disclosure import encode_with_disclosure
from pipeline.gpu import on_gpu
from pipeline.hub import display_source, redact_paths
from pipeline.generation import (
    FILE_FORMATS,
    GhostBackend,
    OutputSpec,
    RenderedOutput,
    encode_image,
    parse_file_format,
    plan_outputs,
    size_warnings,
    spec_parameters,
)
from pipeline.ingest import ingest_bytes, ingest_file
from pipeline.plans import MEGABYTE, Plan, day_start, plan_for, resets_in, upgrade_hint
from pipeline.listing import clean_title, listing_noun, suggest_title
from pipeline.naming import garment_name, numbered
from pipeline.pattern import parse_pattern
from pipeline.reading import read_garment
from pipeline.presets import MARKETPLACES, MarketplacePreset, get_marketplace, parse_background
from pipeline.thumbnails import thumbnail_jpeg
from pipeline.workers import CPU_THREADS
from pipeline.jobs import JobContext, JobRunner
from pipeline.model_cards import ModelCard, load_model_cards
from pipeline.edit_diffusion import EDIT_FAMILIES
from pipeline.on_model import OnModelOptions, OnModelPlan, plan_on_model, plan_persona_photo, render_on_model
from pipeline.segmentation import Segmentation, describe_segmentation_backend, get_segmenter, parse_points
from pipeline.settings import Settings
from pipeline.weights import unavailable_reason
from storage import FileStore, RecordNotFound, StudioDatabase
from storage.database import LOCAL_USER_EMAIL, GenerationLimitReached, GenerationLimits, bindable_text
from storage.backup import BackupScheduler, backup_settings_from_env, restore_if_empty
from storage.locks import DataDirLock, this_worker, worker_alive

log = logging.getLogger(__name__)

_UNCHECKED = object()
GHOST_MODEL_ID = "ghost_01"
CANCELLED_MESSAGE = "Cancelled."
ON_CPU_NOTE = "runs on the CPU here, so expect minutes per image"
MAX_COLOR_NAME_LENGTH = 40
IMAGE_CACHE_SIZE = 3
DEFAULT_MARKETPLACES = ("ebay",)
MAX_CLOSET = 100_000  # garments one closet-wide call looks at
POLL_SECONDS = 0.5  # how often a closet waiting for a free job slot looks again
SLOT_WAIT_SECONDS = 600  # how long it waits on jobs started elsewhere before it gives up
LISTING_COLUMNS = ("garment_id", "name", "title", "category", "garment_type", "color", "color_hex", "secondary_color",
                   "pattern", "files")
NO_SECONDARY_COLOR = "none"  # what a seller sends to say the garment has no second colour


@dataclass(frozen=True)
class _JobRequest:
    """A checked generation request, ready to be queued for any of the seller's garments."""
    model_id: str
    on_model: bool
    parameters: dict[str, Any]
    options: OnModelOptions


class Studio:
    """Owns the database, the file store and the job runner for one data directory."""

    def __init__(self, settings: Settings, database: StudioDatabase, files: FileStore, runner: JobRunner,
                 lock: DataDirLock | None = None):
        self.settings = settings
        self.lock = lock
        self.database = database
        self.files = files
        self.runner = runner
        self.ghost_backend = GhostBackend()
        self.owner_id = database.ensure_local_user()["id"]
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._images_lock = threading.Lock()
        self._diffusion_lock = threading.Lock()
        self.backups: BackupScheduler | None = None
        self.cards: dict[str, ModelCard] = {}  # read once, when the studio opens
        self._diffusion_reason: object = _UNCHECKED

    @classmethod
    def open(cls, settings: Settings) -> "Studio":
        """Opens (creating or upgrading) the data directory, loads the model cards and recovers from a crash."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        repo_id, token, _ = backup_settings_from_env()
        if repo_id:  # a fresh disk (a restarted Space) starts from the last backup, never from nothing
            restore_if_empty(settings.data_dir, repo_id, token)
        database = StudioDatabase(settings.database_path)
        cards = load_model_cards(settings.model_cards_dir)
        database.sync_virtual_models(card.database_row() for card in cards)
        lock = DataDirLock(settings.data_dir)
        studio = cls(settings, database, FileStore(settings.files_dir), JobRunner(), lock)
        studio.cards = {card.id: card for card in cards}
        if lock.acquired:  # otherwise another live studio process owns these jobs, files and backups
            studio._record_missing_file_sizes()
            with lock.alone() as alone:  # no other studio process has the directory open (none can open it now)
                studio.recover(alone)
            studio.backups = BackupScheduler.from_env(settings.database_path, settings.files_dir)
            studio.backups.start()
        return studio

    def as_user(self, user_id: str) -> "Studio":
        """The same studio acting for another user: everything it lists, reads, changes or deletes is theirs."""
        scoped = copy.copy(self)
        scoped.owner_id = self.database.get_user(user_id)["id"]
        return scoped

    def close(self) -> None:
        self.runner.shutdown(wait=True)
        if self.backups:
            self.backups.stop()  # one last push, with every finished job
        self.database.close()
        if self.lock:
            self.lock.release()

    def recover(self, alone: bool = False) -> None:
        """After a crash: jobs that were running are failed with a clear message, queued ones run again,
        and files that no row points at (a write that never got recorded) are removed. A running job whose
        process (`generations.worker`) is still alive, such as a `resell-studio generate` beside the server, is
        left to finish.

        `alone`: no other studio process has the data directory open (DataDirLock.alone), so every unrecorded
        file and `.partial` is a crash's leftover whatever its age; otherwise only those past the grace period,
        since a live process may be between writing a file and recording it. The sweep comes before queued jobs
        are resubmitted: their files are not recorded yet while they run."""
        # Alone, every running job is a dead process's; otherwise another studio process may be running some.
        interrupted = self.database.fail_interrupted_generations(
            still_running=(lambda worker: False) if alone else worker_alive)
        if interrupted:
            log.warning("marked %d interrupted generation(s) as failed", len(interrupted))
        removed = self.files.sweep(self.database.referenced_files(), older_than_seconds=None if alone else 600)
        if removed:
            log.warning("removed %d orphan file(s) from the file store", len(removed))
        for generation in self.database.generations_with_status("pending"):
            self._submit(generation["id"])

    # -- status -------------------------------------------------------------------------------

    def backend_status(self) -> dict[str, str]:
        segmentation = describe_segmentation_backend(self.settings.segmentation_backend, self.settings.sam_model)
        return {"segmentation": segmentation, "category": self._describe_category_backend(),
                "generation": self._describe_generation_backends()}

    def _describe_generation_backends(self) -> str:
        models = self.diffusion_models()
        reason = self._diffusion_unavailable_reason()
        shown = display_source(models.base_model)
        state = f"unavailable: {reason}" if reason else f"available ({models.family}: {shown})"
        return f"Ghost photos: available (no weights needed). On-model photos: {state}"

    def _describe_category_backend(self) -> str:
        backend = self.settings.category_backend
        model = display_source(resolve_category_model(self.settings.category_model))
        if backend == "heuristic":
            return "Category: shape heuristic (chosen in the settings)."
        if backend == "clip":
            return f"Category: CLIP ({model})."
        if backend == "trained":
            return "Category: the studio's own trained model (shipped with the code)."
        return (f"Category: CLIP ({model}) when its weights load, else the studio's own trained model, else a shape "
                "heuristic; each garment shows which.")

    def virtual_models(self) -> list[dict[str, Any]]:
        models = []
        for model in self.database.list_virtual_models():
            available, reason = self._model_availability(model)
            models.append({**model, "available": available, "unavailable_reason": reason})
        return models

    def _model_availability(self, model: dict[str, Any]) -> tuple[bool, str | None]:
        if model["backend"] == self.ghost_backend.name:
            return True, None
        family = self.diffusion_models().family
        if model["kind"] == "ghost" and family not in EDIT_FAMILIES:
            return False, (f"The 3D ghost needs an image-editing family ({' or '.join(EDIT_FAMILIES)}); this studio "
                           f"runs {family}.")
        reason = self._diffusion_unavailable_reason()
        return reason is None, reason

    def diffusion_models(self) -> DiffusionModels:
        s = self.settings
        return models_from(s.diffusion_family, base_model=s.base_model, controlnet=s.controlnet,
                           ip_adapter=s.ip_adapter, ip_adapter_subfolder=s.ip_adapter_subfolder,
                           ip_adapter_weight_name=s.ip_adapter_weight_name, image_encoder=s.image_encoder,
                           image_encoder_subfolder=s.image_encoder_subfolder, lora=s.lora,
                           lora_weight_name=s.lora_weight_name)

    def _diffusion_unavailable_reason(self) -> str | None:
        """Why on-model photos cannot be made here, or None; checked once (a load failure replaces it)."""
        with self._diffusion_lock:
            if self._diffusion_reason is _UNCHECKED:
                self._diffusion_reason = unavailable_reason(required_weights(self.diffusion_models()))
            return self._diffusion_reason

    def _diffusion_backend(self) -> DiffusionBackend:
        try:
            return load_diffusion_backend(self.diffusion_models(), self.settings.diffusion_device,
                                          cpu_offload=self.settings.cpu_offload, vae_tiling=self.settings.vae_tiling)
        except BackendUnavailableError as error:
            with self._diffusion_lock:
                self._diffusion_reason = str(error)
            raise

    # -- garments -----------------------------------------------------------------------------

    def upload_garment(self, path: str | Path, filename: str | None = None, segment: bool = True,
                       backend: str | None = None) -> dict[str, Any]:
        """Validates and stores a photo, then cuts the garment out unless `segment` is false.

        A refused photo raises InputError and leaves nothing stored."""
        self._segmenter(backend)  # an unusable backend is refused before anything is stored
        ingested = ingest_file(path)
        self._check_storage_quota(len(ingested.original))
        relative = self.files.write("originals", ingested.original, ingested.extension)
        try:
            garment = self.database.create_garment(
                self.owner_id, relative, ingested.image.width, ingested.image.height,
                original_filename=_display_name(filename or Path(path).name),
                original_bytes=len(ingested.original),
            )
        except BaseException:
            self.files.delete(relative)
            raise
        self._remember_image(garment["id"], ingested.image)
        if segment:
            return self.segment_garment(garment["id"], backend)
        return self._public_garment(garment)

    def upload_garments(self, paths: Sequence[str | Path], filenames: Sequence[str | None] | None = None,
                        segment: bool = True, backend: str | None = None) -> dict[str, Any]:
        """Uploads many photos, in order, each as `upload_garment` does. A refused photo does not stop the others:
        returns {"garments": [garment, ...], "refused": [{"filename", "error"}, ...]}."""
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        names = [None] * len(paths) if filenames is None else list(filenames)
        if len(names) != len(paths):
            raise InputError(f"Give one file name per photo: {len(paths)} photos, {len(names)} names.")
        self._segmenter(backend)  # an unusable backend refuses the whole batch, not each photo
        garments, refused = [], []
        for path, filename in zip(paths, names):
            try:
                garments.append(self.upload_garment(path, filename, segment, backend))
            except StudioError as error:
                refused.append({"filename": _display_name(filename or Path(path).name), "error": str(error)})
        return {"garments": garments, "refused": refused}

    def segment_garment(self, garment_id: str, backend: str | None = None) -> dict[str, Any]:
        """Cuts the garment out (again) and detects its colour and, unless the seller set it, its category.

        `backend` is auto, fused, classic or sam; None uses the studio's setting. A photo in which no garment can be
        found is recorded as `failed` with the reason, not raised."""
        garment = self._garment(garment_id)
        segmenter = self._segmenter(backend)
        image = self._garment_image(garment)
        try:
            segmentation = segmenter.segment(image, cache_key=garment_id)
            if not segmentation.mask.any():
                raise SegmentationError(f"The {segmenter.name} cut-out found no garment: click on the garment "
                                        "to mark it, or try another backend.")
        except SegmentationError as error:
            return self._public_garment(self.database.update_garment(
                garment_id, status="failed", error_message=str(error), segmentation_backend=segmenter.name))
        return self._store_segmentation(garment, image, segmentation, points=[])

    def warm_up(self) -> str:
        """Loads the cut-out and category models by reading a small made-up photo, so that the first seller after
        a start does not wait for them (with `auto`, finding out that CLIP's weights are not there takes seconds).
        Returns what answered; a model that cannot load is left for the first upload to report."""
        started = time.perf_counter()
        image = _warm_up_photo()
        try:
            segmentation = self._segmenter(None).segment(image)
            reading = read_garment(image, segmentation.mask, self.settings.category_backend,
                                   self.settings.category_model, colours=False)
        except StudioError as error:
            log.warning("The models could not be loaded ahead of the first upload: %s", error)
            return f"not ready: {error}"
        ready = (f"the {segmentation.backend} cut-out and the {reading.category.backend} category model, "
                 f"loaded in {time.perf_counter() - started:.1f} s")
        log.info("Ready for uploads: %s.", ready)
        return ready

    def preview_refinement(self, garment_id: str, points: Sequence[Sequence[float]],
                           backend: str | None = None) -> Segmentation:
        """The cut-out the clicks would give, without storing it. Points are [x, y, label] in photo pixels,
        label 1 for garment and 0 for background. The first call per garment computes SAM's image embedding;
        later clicks reuse it."""
        garment = self._garment(garment_id)
        image = self._garment_image(garment)
        clicks = parse_points(points, image.size)
        try:
            return self._segmenter(backend, for_refinement=True).refine(image, clicks, cache_key=garment_id)
        except SegmentationError as error:
            raise InputError(f"{error} Add a click on the garment.") from error

    def refine_garment(self, garment_id: str, points: Sequence[Sequence[float]],
                       backend: str | None = None) -> dict[str, Any]:
        """Stores the clicked cut-out as the garment's mask, with its points."""
        segmentation = self.preview_refinement(garment_id, points, backend)
        garment = self._garment(garment_id)
        clicks = parse_points(points, (garment["width"], garment["height"]))
        return self._store_segmentation(garment, self._garment_image(garment), segmentation, clicks)

    def _store_segmentation(self, garment: dict[str, Any], image: Image.Image, segmentation: Segmentation,
                            points: list) -> dict[str, Any]:
        if not segmentation.mask.any():
            raise InputError("That cut-out is empty: click on the garment to add it back.")
        values: dict[str, Any] = {
            "segmentation_backend": segmentation.backend, "status": "segmented", "error_message": None,
            "mask_points": [list(p) for p in points],
        }
        mask = segmentation.mask
        encoding = CPU_THREADS.submit(lambda: (_encode_mask(mask), thumbnail_jpeg(image, mask)))
        reading = read_garment(image, mask, self.settings.category_backend, self.settings.category_model,
                               category=garment["category_source"] != "user",
                               colours=garment["color_source"] != "user", garment_type=garment["garment_type"])
        if reading.category is not None:
            prediction = reading.category
            values.update(category=prediction.category, category_source=prediction.backend,
                          category_confidence=round(prediction.confidence, 4),
                          category_alternative=prediction.alternative, garment_type=prediction.garment_type)
        if reading.colours is not None:
            colours, secondary = reading.colours, reading.colours.secondary
            values.update(detected_color=colours.color.name, detected_color_hex=colours.color.hex,
                          secondary_color=secondary.name if secondary else None,
                          secondary_color_hex=secondary.hex if secondary else None,
                          pattern=colours.pattern, color_source="detected")
        values.update(_suggested_title({**garment, **values}))
        encoded_mask, thumbnail = encoding.result()
        written = [self.files.write("masks", encoded_mask, ".png")]
        try:
            written.append(self.files.write("thumbnails", thumbnail, ".jpg"))
            updated = self.database.update_garment(
                garment["id"], mask_image_url=written[0], mask_bytes=len(encoded_mask), thumbnail_url=written[1],
                thumbnail_bytes=len(thumbnail), **values)
        except BaseException:
            for url in written:
                self.files.delete(url)
            raise
        for replaced in (garment["mask_image_url"], garment["thumbnail_url"]):
            if replaced:
                self.files.delete(replaced)
        return self._public_garment(updated)

    def _segmenter(self, backend: str | None, for_refinement: bool = False):
        return get_segmenter(backend or self.settings.segmentation_backend, self.settings.sam_model, for_refinement)

    def update_garment(self, garment_id: str, category: str | None = None, color_name: str | None = None,
                       color_hex: str | None = None, secondary_color: str | None = None, pattern: str | None = None,
                       title: str | None = None) -> dict[str, Any]:
        """Stores the seller's corrections; None leaves a field as it is. What the seller sets stays when the garment
        is cut out again. `secondary_color` "none" removes the second colour; a `title` of "" (or only spaces) goes
        back to the suggested one, which follows the other attributes until the seller writes their own."""
        garment = self._garment(garment_id)
        values: dict[str, Any] = {}
        if category:
            chosen = parse_category(category)
            values.update(category=chosen, category_source="user", category_confidence=None,
                          category_alternative=None)
            if chosen != garment["category"]:
                values["garment_type"] = None  # "t-shirt" no longer says what a dress is
        if color_hex:
            named = color_from_hex(color_hex)
            values.update(detected_color=named.name, detected_color_hex=named.hex)
        name = _colour_name(color_name, "colour")
        if name:
            values["detected_color"] = name
        second = _colour_name(secondary_color, "second colour")
        if second == NO_SECONDARY_COLOR:
            values.update(secondary_color=None, secondary_color_hex=None)
        elif second:
            shades = PALETTE.get(second)
            values.update(secondary_color=second, secondary_color_hex=shades[0] if shades else None)
        if pattern:
            values["pattern"] = parse_pattern(pattern)
        if values.keys() & {"detected_color", "secondary_color", "pattern"}:
            values["color_source"] = "user"
        if title is not None:
            own = clean_title(title)
            values.update(title=own or None, title_source="user" if own else "detected")
        if not values:
            raise InputError("Nothing to change: give a category, a colour name or hex such as #1f2a44, a second "
                             "colour, a pattern or a title.")
        values.update(_suggested_title({**garment, **values}))
        return self._public_garment(self.database.update_garment(garment_id, **values))

    def get_garment(self, garment_id: str) -> dict[str, Any]:
        return self._public_garment(self._garment(garment_id))

    def list_garments(self, limit: int = 50, offset: int = 0, category: str | None = None,
                      since: str | None = None) -> list[dict[str, Any]]:
        """The seller's garments, newest first, a page at a time; only those of `category`, and only those
        uploaded on or after `since` (an ISO date or time; UTC unless it names its zone), when given."""
        limit, offset = _page(limit, offset)
        rows = self.database.list_garments(self.owner_id, limit, offset,
                                           category=parse_category(category) if category else None,
                                           since=_utc_iso(since) if since else None)
        return [self._public_garment(row) for row in rows]

    def garment_thumbnail(self, garment_id: str) -> Path:
        """The garment's closet thumbnail: its cut-out on white, or the photo while it has no cut-out. Garments
        stored before thumbnails existed get theirs now."""
        garment = self._garment(garment_id)
        if garment["thumbnail_url"] and self.files.exists(garment["thumbnail_url"]):
            return self.files.path(garment["thumbnail_url"])
        mask = None
        if garment["status"] == "segmented" and garment["mask_image_url"]:
            mask = _decode_mask(self.files.read(garment["mask_image_url"]))
        thumbnail = thumbnail_jpeg(self._garment_image(garment), mask)
        url = self.files.write("thumbnails", thumbnail, ".jpg")
        try:
            self.database.update_garment(garment_id, thumbnail_url=url, thumbnail_bytes=len(thumbnail))
        except BaseException:
            self.files.delete(url)
            raise
        if garment["thumbnail_url"]:
            self.files.delete(garment["thumbnail_url"])
        return self.files.path(url)

    def garment_image(self, garment_id: str) -> Image.Image:
        """The oriented RGB photo."""
        return self._garment_image(self._garment(garment_id))

    def garment_mask(self, garment_id: str) -> np.ndarray:
        garment = self._garment(garment_id)
        if not garment["mask_image_url"]:
            raise InputError("This garment has no cut-out yet: segment it first.")
        return _decode_mask(self.files.read(garment["mask_image_url"]))

    # -- generations ----------------------------------------------------------------------------

    def generate(self, garment_id: str, model_id: str = GHOST_MODEL_ID, aspect_ratios: Sequence[str] = (),
                 marketplaces: Sequence[str] = (), background: str = "white", file_format: str = "jpeg",
                 wait: bool = False, timeout: float | None = None, options: OnModelOptions | None = None,
                 rerun_of: str | None = None) -> dict[str, Any]:
        """Queues a generation job and returns it (pending), or the finished job when `wait` is true.

        Ghost models compose the real pixels; persona models run the diffusion pipeline with `options`
        (defaults from the card and the model family). `rerun_of` records which past generation this repeats."""
        garment = self._garment(garment_id)
        problem = _cut_out_problem(garment)
        if problem:
            raise InputError(problem)
        if rerun_of:
            self._generation(rerun_of)
        request = self._job_request(model_id, aspect_ratios, marketplaces, background, file_format, options)
        try:
            generation_id = self._queue_job(garment, request, rerun_of)
        except GenerationLimitReached as reached:
            raise _generation_quota_error(self.plan(), reached) from None
        if wait:
            self.runner.wait(generation_id, timeout)
        return self.get_generation(generation_id)

    def _job_request(self, model_id: str, aspect_ratios: Sequence[str], marketplaces: Sequence[str],
                     background: str, file_format: str, options: OnModelOptions | None) -> _JobRequest:
        """Checks the model, the shapes and the plan's limits on sizes and batch, for jobs of any garment."""
        model = self._virtual_model(model_id)
        available, reason = self._model_availability(model)
        if not available:
            raise BackendUnavailableError(f"{model['name']} ({model_id}) is unavailable: {reason}")
        specs = plan_outputs(_names(aspect_ratios, "aspect ratios", "4:5"),
                             _names(marketplaces, "marketplaces", "ebay"))
        parameters = {"outputs": spec_parameters(specs), "background": parse_background(background),
                      "file_format": parse_file_format(str(file_format))}
        on_model = model["backend"] != self.ghost_backend.name
        self._check_output_limits(specs, options if on_model else None)
        return _JobRequest(model_id, on_model, parameters, options or OnModelOptions())

    def _queue_job(self, garment: dict[str, Any], request: _JobRequest, rerun_of: str | None = None) -> str:
        """Stores the job and queues it; raises GenerationLimitReached (storing nothing) when the plan's daily or
        concurrent limit refuses it."""
        plan = self.plan()
        limits = GenerationLimits(since=day_start().isoformat(), per_day=plan.generations_per_day,
                                  concurrent=plan.concurrent_jobs)
        if request.on_model:
            generation = self._create_on_model_generation(garment, request.model_id, request.parameters,
                                                          request.options, rerun_of, limits)
        else:
            generation = self.database.create_generation(garment["id"], request.model_id, self.ghost_backend.name,
                                                         parameters=request.parameters, limits=limits)
        self._submit(generation["id"], "gpu" if request.on_model else "cpu")
        return generation["id"]

    def generate_closet(self, model_id: str = GHOST_MODEL_ID, marketplaces: Sequence[str] = (),
                        aspect_ratios: Sequence[str] = (), background: str = "white", file_format: str = "jpeg",
                        garment_ids: Sequence[str] | None = None, options: OnModelOptions | None = None,
                        wait: bool = False, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """One job per garment: those of `garment_ids`, or every cut-out garment of the seller, oldest first.

        Jobs are queued as fast as the plan's concurrent limit allows, waiting for a running one to end when it
        refuses; once the daily limit refuses, the garments left are skipped with the reason. `progress(done,
        total)` counts garments whose job ended or that were skipped, as jobs are queued and end. With `wait`,
        returns once every job has ended. Returns {"jobs": [job, ...], "skipped": [{"garment_id", "reason"}]}."""
        request = self._job_request(model_id, aspect_ratios, marketplaces, background, file_format, options)
        garments, skipped = self._closet_garments(garment_ids)
        total = len(garments) + len(skipped)
        queued: list[str] = []
        active: set[str] = set()  # queued jobs not known to have ended

        def report() -> None:
            active.difference_update(self._ended_generations(active))
            if progress:
                progress(len(skipped) + len(queued) - len(active), total)

        for index, garment in enumerate(garments):
            try:
                queued.append(self._queue_when_free(garment, request, active))
                active.add(queued[-1])
            except QuotaExceededError as error:  # no more jobs today (or no slot comes free): skip the rest
                skipped.extend({"garment_id": left["id"], "reason": str(error)} for left in garments[index:])
                break
            except StudioError as error:
                skipped.append({"garment_id": garment["id"], "reason": str(error)})
            report()
        while wait and active:
            if not self.runner.wait_any(active, POLL_SECONDS):
                time.sleep(POLL_SECONDS)  # not run by this runner: the database says when it ends
            report()
        report()
        jobs = []
        for job_id in queued:
            try:
                jobs.append(self.get_generation(job_id))
            except NotFoundError:  # its garment was deleted meanwhile
                pass
        return {"jobs": jobs, "skipped": skipped}

    def _closet_garments(self, garment_ids: Sequence[str] | None) -> tuple[list[dict[str, Any]], list[dict]]:
        """The garments a closet job runs for, and those given that cannot be (no usable cut-out), with why."""
        if garment_ids is None:
            return self.database.list_garments(self.owner_id, MAX_CLOSET, status="segmented", oldest_first=True), []
        ready, skipped = [], []
        for garment_id in dict.fromkeys(_names(garment_ids, "garment ids", "3f2a9c...")):
            garment = self._garment(garment_id)
            problem = _cut_out_problem(garment)
            if problem:
                skipped.append({"garment_id": garment["id"], "reason": problem})
            else:
                ready.append(garment)
        return ready, skipped

    def _queue_when_free(self, garment: dict[str, Any], request: _JobRequest, ours: set[str]) -> str:
        """Queues the garment's job; while the concurrent limit refuses it, waits for a job to end and tries again.
        Raises QuotaExceededError when the daily limit refuses it, or when no job slot comes free."""
        while True:
            try:
                return self._queue_job(garment, request)
            except GenerationLimitReached as reached:
                if reached.limit == "per_day" or not self._wait_for_a_free_slot(ours):
                    raise _generation_quota_error(self.plan(), reached) from None

    def _wait_for_a_free_slot(self, ours: set[str]) -> bool:
        """Blocks until the seller has fewer jobs pending or running than the plan allows, waking when one of
        `ours` ends; jobs started elsewhere are looked at every POLL_SECONDS, for at most SLOT_WAIT_SECONDS
        (False when none ended by then)."""
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        while self.database.count_active_generations(self.owner_id) >= self.plan().concurrent_jobs:
            if self.runner.wait_any(ours, POLL_SECONDS):
                deadline = time.monotonic() + SLOT_WAIT_SECONDS  # ours are running: they will end
            elif time.monotonic() >= deadline:
                return False
            else:
                time.sleep(POLL_SECONDS)
        return True

    def _ended_generations(self, generation_ids: set[str]) -> set[str]:
        ended = set()
        for generation_id in generation_ids:
            try:
                status = self.database.get_generation(generation_id)["status"]
            except RecordNotFound:  # its garment was deleted meanwhile
                status = "failed"
            if status in ("completed", "failed"):
                ended.add(generation_id)
        return ended

    def _create_on_model_generation(self, garment: dict[str, Any], model_id: str, parameters: dict[str, Any],
                                    options: OnModelOptions, rerun_of: str | None,
                                    limits: GenerationLimits) -> dict[str, Any]:
        models = self.diffusion_models()
        card = self._model_card(model_id)
        plan = plan_on_model(card, garment["category"] or "top", garment["detected_color"] or "", options,
                             models.family, few_step=bool(models.lora))
        return self.database.create_generation(
            garment["id"], model_id, "diffusion", parameters={**parameters, **plan.parameters()},
            prompt_used=plan.prompt, negative_prompt=plan.negative_prompt, batch_size=len(plan.seeds),
            seed=plan.seeds[0], model_ids=asdict(models), rerun_of=rerun_of, limits=limits)

    def rerun_generation(self, generation_id: str, wait: bool = False, **changes: Any) -> dict[str, Any]:
        """Runs a past generation again with exactly its stored parameters (seeds included), except `changes`
        (any OnModelOptions field; None leaves a value as it was)."""
        old = self._generation(generation_id)
        parameters = old["parameters"]
        specs = [OutputSpec(**spec) for spec in parameters["outputs"]]
        ratios = [spec.aspect_ratio for spec in specs if not spec.marketplace]
        marketplaces = [spec.marketplace for spec in specs if spec.marketplace]
        options = None
        if old["backend"] != self.ghost_backend.name:
            stored = {"prompt": parameters["prompt"], "negative_prompt": parameters["negative_prompt"],
                      "batch_size": len(parameters["seeds"]), "seed": parameters["seeds"][0],
                      "steps": parameters["steps"], "guidance_scale": parameters["guidance_scale"],
                      "ip_adapter_scale": parameters["ip_adapter_scale"],
                      "controlnet_scale": parameters["controlnet_scale"], "width": parameters["width"],
                      "height": parameters["height"], "pose": parameters["pose"]}
            unknown = set(changes) - set(stored)
            if unknown:
                raise InputError(f"Unknown parameters {sorted(unknown)}; these can change: {', '.join(stored)}.")
            options = OnModelOptions(**{**stored, **{k: v for k, v in changes.items() if v is not None}})
        return self.generate(old["garment_id"], old["target_model_id"], ratios, marketplaces,
                             parameters["background"], parameters["file_format"], wait=wait, options=options,
                             rerun_of=generation_id)

    # -- persona reference photos (the multi-reference editing families) --------------------------

    def persona_photo(self, model_id: str) -> dict[str, Any]:
        """The seller's reference photo of a persona for the studio's family: `image_url`, `source` (generated
        or user), `seed`, `family`. InputError while there is none yet (the first on-model photo makes it)."""
        family = self._edit_family()
        self._persona_card(model_id)
        stored = self.database.get_persona_photo(self.owner_id, model_id, family)
        if stored is None:
            raise InputError(f"{self._persona_card(model_id).name} has no reference photo for {family} yet: the "
                             "first on-model photo makes one, or upload your own.")
        return self._public_persona_photo(stored)

    def make_persona_photo(self, model_id: str, seed: int | None = None) -> dict[str, Any]:
        """Makes the persona's reference photo again (a new person when `seed` differs from the card's own), and
        keeps it for every later on-model photo. Replaces the seller's own photo, if they gave one."""
        self._edit_family()
        card = self._persona_card(model_id)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31):
            raise InputError(f"A seed is a whole number from 0 to 2147483647, not {seed!r}.")
        backend = self._diffusion_backend()
        return self._public_persona_photo(self._store_generated_persona_photo(self.owner_id, card, backend, seed))

    def set_persona_photo(self, model_id: str, path: str | Path) -> dict[str, Any]:
        """Uses the seller's own photo (of themselves or their model) as the persona's reference: private to the
        seller, used for every later on-model photo in the studio's family."""
        family = self._edit_family()
        self._persona_card(model_id)
        ingested = ingest_file(path)
        png = _png(ingested.image)
        self._check_storage_quota(len(png))
        return self._public_persona_photo(self._store_persona_photo(self.owner_id, model_id, family, png, "user"))

    def forget_persona_photo(self, model_id: str) -> None:
        """Drops the reference photo; the next on-model photo makes one from the card again."""
        family = self._edit_family()
        self._persona_card(model_id)
        removed = self.database.delete_persona_photo(self.owner_id, model_id, family)
        if removed:
            self.files.delete(removed)

    def uses_persona_photos(self, model_id: str) -> bool:
        """Whether photos of this model start from a reference photo of the person: a persona, in an editing
        family."""
        card = self.cards.get(model_id)
        return card is not None and card.kind == "persona" and self.diffusion_models().family in EDIT_FAMILIES

    def model_name(self, model_id: str) -> str:
        return self._model_card(model_id).name

    def _person_image(self, owner_id: str, model_id: str, backend, report) -> Image.Image | None:
        """The persona's reference photo for an editing family (made and kept on first use); None for SDXL and
        SD 1.5, which draw the person from the prompt."""
        family = backend.models.family
        if family not in EDIT_FAMILIES or self._model_card(model_id).kind != "persona":  # the 3D ghost has nobody
            return None
        stored = self.database.get_persona_photo(owner_id, model_id, family)
        if stored is None or not self.files.exists(stored["image_url"]):
            card = self._persona_card(model_id)
            report(0.09, f"Making {card.name}'s reference photo (once, then reused for every garment)")
            stored = self._store_generated_persona_photo(owner_id, card, backend, None)
        with Image.open(self.files.path(stored["image_url"])) as photo:
            return photo.convert("RGB")

    def _store_generated_persona_photo(self, owner_id: str, card: ModelCard, backend, seed: int | None) -> dict:
        plan = plan_persona_photo(card, backend.models.family, few_step=bool(backend.models.lora), seed=seed)
        picture = on_gpu(backend.create)(plan.prompt, plan.width, plan.height, plan.steps, plan.guidance_scale,
                                         plan.seed, plan.negative_prompt)
        return self._store_persona_photo(owner_id, card.id, backend.models.family, _png(picture), "generated",
                                         plan.seed)

    def _store_persona_photo(self, owner_id: str, model_id: str, family: str, png: bytes, source: str,
                             seed: int | None = None) -> dict[str, Any]:
        url = self.files.write("personas", png, ".png")
        try:
            row, replaced = self.database.set_persona_photo(owner_id, model_id, family, url, len(png), source, seed)
        except BaseException:
            self.files.delete(url)
            raise
        if replaced:
            self.files.delete(replaced)
        return row

    def _edit_family(self) -> str:
        family = self.diffusion_models().family
        if family not in EDIT_FAMILIES:
            raise InputError(f"Persona reference photos are used by the {' and '.join(EDIT_FAMILIES)} families; "
                             f"this studio runs {family}, which draws the person from the card's prompt.")
        return family

    def _persona_card(self, model_id: str) -> ModelCard:
        card = self._model_card(model_id)
        if card.kind != "persona":
            raise InputError(f"{card.name} ({model_id}) is not a persona; only personas have reference photos.")
        return card

    @staticmethod
    def _public_persona_photo(row: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in row.items() if key != "owner_id"}

    def _model_card(self, model_id: str) -> ModelCard:
        if model_id not in self.cards:
            raise NotFoundError(f"The card of virtual model {model_id!r} is missing from "
                                f"{self.settings.model_cards_dir}.")
        return self.cards[model_id]

    def get_generation(self, generation_id: str) -> dict[str, Any]:
        """The job with its outputs, and its progress while it runs."""
        generation = self._generation(generation_id)
        progress = self.runner.progress(generation_id)
        return {
            **self._public_generation(generation),
            "progress": progress.fraction if progress else (1.0 if generation["status"] == "completed" else 0.0),
            "progress_message": progress.message if progress else generation["status"],
            "outputs": self.database.list_outputs(generation_id),
        }

    def wait_for_generation(self, generation_id: str, timeout: float | None = None) -> dict[str, Any]:
        self._generation(generation_id)
        self.runner.wait(generation_id, timeout)
        return self.get_generation(generation_id)

    def list_generations(self, garment_id: str | None = None, limit: int = 50, offset: int = 0
                         ) -> list[dict[str, Any]]:
        if garment_id:
            self._garment(garment_id)
        limit, offset = _page(limit, offset)
        return [self._public_generation(generation)
                for generation in self.database.list_generations(self.owner_id, garment_id or None, limit, offset)]

    def cancel_generation(self, generation_id: str) -> dict[str, Any]:
        """Stops a queued or running job; it ends `failed` with "Cancelled." and keeps no files."""
        generation = self._generation(generation_id)
        if generation["status"] not in ("pending", "processing"):
            raise InputError(f"This generation has already ended ({generation['status']}); nothing to cancel.")
        self.runner.cancel(generation_id)
        if generation["status"] == "pending":
            self.database.fail_generation(generation_id, CANCELLED_MESSAGE)
        return self.get_generation(generation_id)

    def _submit(self, generation_id: str, lane: str = "cpu") -> None:
        self.runner.submit(generation_id, lambda job: self._run_generation(generation_id, job), lane)

    def _run_generation(self, generation_id: str, job: JobContext) -> None:
        try:
            generation = self.database.start_generation(generation_id, this_worker())
        except ValueError:  # cancelled (or already run) before it could start
            return
        report = job.report
        written: list[str] = []
        try:
            garment = self.database.get_garment(generation["garment_id"])
            parameters = generation["parameters"]
            report(0.05, "Loading the garment")
            image = self._garment_image(garment)
            mask = _decode_mask(self.files.read(garment["mask_image_url"]))
            specs = [OutputSpec(**spec) for spec in parameters["outputs"]]
            progress = lambda fraction, message: report(0.1 + 0.8 * fraction, message)  # noqa: E731
            if generation["backend"] == self.ghost_backend.name:
                rendered = self.ghost_backend.render(image, mask, specs, parameters["background"], progress)
            else:
                report(0.08, "Loading the diffusion pipeline")
                plan = OnModelPlan(**{key: parameters[key] for key in OnModelPlan.__dataclass_fields__})
                backend = self._diffusion_backend()
                person = self._person_image(garment["owner_id"], generation["target_model_id"], backend, report)
                rendered = on_gpu(render_on_model)(backend, plan, image, mask, specs, garment["category"],
                                                   garment["detected_color_hex"], progress, job.cancelled, person)
            report(0.9, "Saving")
            encoded = CPU_THREADS.map(lambda output: _encode_output(output, parameters["file_format"]), rendered)
            outputs = [self._save_output(output, data, parameters["file_format"], written)
                       for output, data in zip(rendered, encoded)]
            if job.cancelled():
                raise GenerationCancelled()
            self.database.complete_generation(generation_id, outputs)
        except Exception as error:
            for url in written:
                try:
                    self.files.delete(url)
                except OSError:  # the disk went read-only: the sweep on the next start removes it
                    log.warning("could not remove %s of failed generation %s", url, generation_id)
            error = error if isinstance(error, StudioError) else storage_error(error) or error
            message = str(error) if isinstance(error, StudioError) else _unexpected(error)
            if not isinstance(error, StudioError):
                log.exception("generation %s failed", generation_id)
            try:
                self.database.fail_generation(generation_id, message)
            except StorageError:  # the disk is still full or read-only: the next start marks it failed
                log.exception("could not record that generation %s failed", generation_id)

    def _save_output(self, output: RenderedOutput, encoded: bytes, file_format: str,
                     written: list[str]) -> dict[str, Any]:
        """Writes one encoded output file and returns its row."""
        url = self.files.write("outputs", encoded, FILE_FORMATS[file_format])
        written.append(url)
        fidelity = output.fidelity
        return {"image_url": url, "file_bytes": len(encoded), "image_index": output.image_index,
                "aspect_ratio": output.spec.aspect_ratio, "marketplace": output.spec.marketplace, "width": output.image.width, "height": output.image.height,
                "seed": output.seed, "is_ai_generated": int(output.ai_generated),
                "enlargement": round(output.enlargement, 3),
                "fidelity_delta_e": round(fidelity.delta_e, 2) if fidelity else None,
                "fidelity_flagged": int(fidelity.flagged) if fidelity else None,
                "pattern_similarity": output.pattern.similarity if output.pattern else None,
                "pattern_flagged": int(output.pattern.flagged) if output.pattern else None}

    # -- plans, quotas and deletion -------------------------------------------------------------

    def plan(self) -> Plan:
        return plan_for(self.database.get_user(self.owner_id)["subscription_plan"])

    def usage(self) -> dict[str, Any]:
        """The plan's limits and what is used of them."""
        plan = self.plan()
        return {"plan": plan.as_dict(),
                "generations_today": self.database.count_generations_since(self.owner_id, day_start().isoformat()),
                "active_jobs": self.database.count_active_generations(self.owner_id),
                "storage_mb": round(self._storage_bytes() / MEGABYTE, 1), "resets_in": resets_in()}

    def _storage_bytes(self) -> int:
        return self.database.storage_bytes(self.owner_id)

    def _record_missing_file_sizes(self) -> None:
        """Files stored before sizes were recorded get theirs once; a missing file counts as empty."""
        sizes = []
        for table, row_id, column, relative in self.database.files_without_size():
            try:
                sizes.append((table, row_id, column, self.files.path(relative).stat().st_size))
            except (OSError, ValueError):
                sizes.append((table, row_id, column, 0))
        if sizes:
            self.database.record_file_sizes(sizes)

    def _check_storage_quota(self, incoming_bytes: int) -> None:
        plan = self.plan()
        used = self._storage_bytes()
        if used + incoming_bytes > plan.storage_mb * MEGABYTE:
            raise QuotaExceededError(
                f"Your {plan.name} plan stores up to {plan.storage_mb} MB and you use {used / MEGABYTE:.0f} MB; "
                f"delete garments you no longer need to make room.{upgrade_hint(plan)}")

    def _check_output_limits(self, specs: Sequence[OutputSpec], options: OnModelOptions | None) -> None:
        """The plan's limits on sizes and batch; the daily and concurrent limits are checked as the job is stored."""
        plan = self.plan()
        for spec in specs:
            if spec.width and max(spec.width, spec.height) > plan.max_long_side:
                raise QuotaExceededError(
                    f"{spec.marketplace} photos are {spec.width}x{spec.height}; your {plan.name} plan allows "
                    f"{plan.max_long_side} px on the long side.{upgrade_hint(plan)}")
        if options is None:
            return
        if options.batch_size > plan.max_batch_size:
            raise QuotaExceededError(
                f"Your {plan.name} plan makes up to {plan.max_batch_size} images per job, not "
                f"{options.batch_size}.{upgrade_hint(plan)}")
        if max(options.width or 0, options.height or 0) > plan.max_long_side:
            raise QuotaExceededError(
                f"Your {plan.name} plan allows {plan.max_long_side} px on the long side, not "
                f"{max(options.width or 0, options.height or 0)}.{upgrade_hint(plan)}")

    def stored_files(self, garment_id: str | None = None) -> list[Path]:
        """The files stored for one garment (its photo, cut-out, thumbnail and outputs), or for everything of the
        seller."""
        if garment_id is None:
            relative = self.database.owner_files(self.owner_id)
        else:
            garment = self._garment(garment_id)
            relative = [garment["original_image_url"], garment["mask_image_url"], garment["thumbnail_url"]] + [
                output["image_url"] for generation in self.database.list_generations(self.owner_id, garment_id, 500)
                for output in self.database.list_outputs(generation["id"])]
        return [self.files.path(url) for url in relative if url]

    def delete_garment(self, garment_id: str) -> dict[str, Any]:
        """Deletes the garment, its generations and outputs, and every file of them."""
        self._garment(garment_id)
        for generation in self.database.list_generations(self.owner_id, garment_id, limit=500):
            if generation["status"] in ("pending", "processing"):
                self.cancel_generation(generation["id"])
                self.runner.wait(generation["id"], timeout=120)
        for relative in self.database.delete_garment(garment_id):
            self.files.delete(relative)
        with self._images_lock:
            self._images.pop(garment_id, None)
        return {"deleted": garment_id}

    def delete_account(self) -> dict[str, Any]:
        """Deletes the seller's account with every garment, job, output and file. Without accounts (a single
        local user) the studio then starts afresh with an empty local user."""
        for garment in self.database.list_garments(self.owner_id, limit=100_000):
            self.delete_garment(garment["id"])
        deleted = self.database.get_user(self.owner_id)
        for relative in self.database.delete_user(deleted["id"]):
            self.files.delete(relative)
        if deleted["email"] == LOCAL_USER_EMAIL:
            self.owner_id = self.database.ensure_local_user()["id"]
        return {"deleted": deleted["id"]}

    # -- outputs --------------------------------------------------------------------------------

    def get_output(self, output_id: str) -> dict[str, Any]:
        return self._output(output_id)

    def set_favorite(self, output_id: str, is_favorite: bool) -> dict[str, Any]:
        self._output(output_id)
        return self.database.set_favorite(output_id, is_favorite)

    def download(self, output_id: str) -> tuple[Path, dict[str, Any]]:
        """The output's file, counting the download."""
        output = self._output(output_id)
        path = self.files.path(output["image_url"])
        if not path.is_file():
            raise NotFoundError(f"The file of output {output_id} is missing from the data directory.")
        return path, self.database.record_download(output_id)

    def export_garment(self, garment_id: str, favorites_only: bool = False, folder: Path | None = None) -> Path:
        """A zip of the garment's photos for a listing, written into `folder` (default: a new temporary folder,
        which the caller removes): the real cut-outs (ghost shots) first, then the generated ones, each named by
        its order, model and shape. Every file in it counts as downloaded."""
        garment = self._garment(garment_id)
        outputs = []
        for generation in self.database.list_generations(self.owner_id, garment_id, limit=500):
            for output in self.database.list_outputs(generation["id"]):
                if output["is_favorite"] or not favorites_only:
                    outputs.append((generation["target_model_id"], output))
        if not outputs:
            raise InputError("Nothing to export yet: generate photos of this garment"
                             + (" and star the ones you want." if favorites_only else "."))
        outputs.sort(key=lambda pair: (pair[1]["is_ai_generated"], pair[1]["created_at"], pair[1]["image_index"]))
        stem = Path(garment["original_filename"] or "garment").stem[:40] or "garment"
        target = Path(folder or tempfile.mkdtemp(prefix="resell-export-")) / f"{stem}-photos.zip"
        with zipfile.ZipFile(target, "w") as archive:
            for number, (model_id, output) in enumerate(outputs, start=1):
                shape = output["marketplace"] or output["aspect_ratio"].replace(":", "x")
                suffix = Path(output["image_url"]).suffix
                archive.write(self.files.path(output["image_url"]),
                              f"{number:02d}-{model_id}-{shape}-{output['image_index'] + 1}{suffix}")
        for _, output in outputs:
            self.database.record_download(output["id"])
        return target

    def export_marketplace(self, marketplace: str, garment_ids: Sequence[str] | None = None,
                           favorites_only: bool = False, folder: Path | None = None) -> Path:
        """A zip of the photos made for one marketplace, ready for bulk listing, written into `folder` (default: a
        new temporary folder, which the caller removes). Over `garment_ids`, or every garment with photos for it.

        One folder per garment named after it ("navy-top", "navy-top-2"), its real photos (the ghost shots of its
        own pixels) before generated ones, at most the marketplace's photo limit, named
        `<garment>-<marketplace>-<n>`; `listing.csv` at the root lists each garment with its files. Every file
        in it counts as downloaded."""
        preset = get_marketplace(marketplace)
        listings = self._marketplace_listings(preset, garment_ids, favorites_only)
        if not listings:
            starred = " and star the ones you want" if favorites_only else ""
            raise InputError(f"Make photos for {preset.name} first{starred}: choose {preset.name} among the "
                             "marketplaces and generate.")
        target = Path(folder or tempfile.mkdtemp(prefix="resell-export-")) / f"{preset.key}-photos.zip"
        rows = []
        with zipfile.ZipFile(target, "w") as archive:
            names = numbered(garment_name(garment) for garment, _ in listings)
            for name, (garment, outputs) in zip(names, listings):
                files = [f"{name}-{preset.key}-{number}{Path(output['image_url']).suffix}"
                         for number, output in enumerate(outputs, start=1)]
                for file_name, output in zip(files, outputs):
                    archive.write(self.files.path(output["image_url"]), f"{name}/{file_name}")
                rows.append([garment["id"], name, garment["title"], garment["category"], listing_noun(garment),
                             garment["detected_color"], garment["detected_color_hex"], garment["secondary_color"],
                             garment["pattern"], ";".join(files)])
            archive.writestr("listing.csv", _csv_text(LISTING_COLUMNS, rows))
        for _, outputs in listings:
            for output in outputs:
                self.database.record_download(output["id"])
        return target

    def _marketplace_listings(self, preset: MarketplacePreset, garment_ids: Sequence[str] | None,
                              favorites_only: bool) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(garment, its outputs for the marketplace, real photos first, at most `max_photos`) per garment."""
        by_garment: dict[str, list[dict[str, Any]]] = {}
        for output in self.database.marketplace_outputs(self.owner_id, preset.key, favorites_only):
            by_garment.setdefault(output["garment_id"], []).append(output)
        if garment_ids is None:
            chosen = list(by_garment)
        else:
            chosen = [self._garment(garment_id)["id"]
                      for garment_id in dict.fromkeys(_names(garment_ids, "garment ids", "3f2a9c..."))]
        return [(self.database.get_garment(garment_id), self._distinct(by_garment[garment_id])[:preset.max_photos])
                for garment_id in chosen if garment_id in by_garment]

    def _distinct(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`outputs` without those whose file is the same image as an earlier one's: making the same photos
        twice (the same garment, shape and background) gives identical files, and a listing needs each once."""
        seen: set[bytes] = set()
        distinct = []
        for output in outputs:
            digest = hashlib.sha256(self.files.path(output["image_url"]).read_bytes()).digest()
            if digest not in seen:
                seen.add(digest)
                distinct.append(output)
        return distinct

    def size_check(self, garment_id: str, marketplaces: Sequence[str] = (),
                   aspect_ratios: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The chosen sizes (all three aspect ratios when none) for which the garment's photo is too small: each
        with the garment's long side in the photo (`garment_px`), the long side it takes in the output
        (`needed_px`), the `enlargement` and a `message` for the seller. Empty when every size is sharp."""
        mask = self.garment_mask(garment_id)
        specs = plan_outputs(_names(aspect_ratios, "aspect ratios", "4:5"),
                             _names(marketplaces, "marketplaces", "ebay"))
        return size_warnings(mask, specs)

    def preferred_marketplaces(self) -> list[str]:
        """The marketplaces the seller last chose (eBay until they choose)."""
        stored = self.database.get_user(self.owner_id)["preferred_marketplaces"]
        if stored is None:
            return list(DEFAULT_MARKETPLACES)
        return [key for key in stored if key in MARKETPLACES]

    def set_preferred_marketplaces(self, keys: Sequence[str]) -> list[str]:
        """Remembers the seller's marketplaces (an empty list is a choice too) and returns them."""
        chosen = list(dict.fromkeys(get_marketplace(key).key for key in _names(keys, "marketplaces", "ebay")))
        user = self.database.update_user(self.owner_id, preferred_marketplaces=chosen)
        return user["preferred_marketplaces"]

    def preferred_model_id(self) -> str | None:
        return self.database.get_user(self.owner_id)["preferred_model_id"]

    def set_preferred_model(self, model_id: str) -> dict[str, Any]:
        """The virtual model the studio preselects for this seller."""
        self._virtual_model(model_id)
        user = self.database.update_user(self.owner_id, preferred_model_id=model_id)
        return {"preferred_model_id": user["preferred_model_id"]}

    def list_favorites(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.database.list_favorites(self.owner_id, _page(limit, 0)[0])

    def file_path(self, relative: str) -> Path:
        return self.files.path(relative)

    # -- lookups that hide other owners' records ------------------------------------------------

    def _garment(self, garment_id: str) -> dict[str, Any]:
        try:
            garment = self.database.get_garment(bindable_text(garment_id))
        except RecordNotFound:
            garment = None
        if garment is None or garment["owner_id"] != self.owner_id:
            raise NotFoundError(f"No garment with id {garment_id!r}. List your garments to see their ids.")
        return garment

    def _generation(self, generation_id: str) -> dict[str, Any]:
        try:
            generation = self.database.get_generation(bindable_text(generation_id))
            self._garment(generation["garment_id"])
        except (RecordNotFound, NotFoundError):
            raise NotFoundError(f"No generation with id {generation_id!r}.") from None
        return generation

    def _output(self, output_id: str) -> dict[str, Any]:
        try:
            if self.database.output_owner(bindable_text(output_id)) != self.owner_id:
                raise RecordNotFound("output_images", output_id)
            return self.database.get_output(output_id)
        except RecordNotFound:
            raise NotFoundError(f"No output image with id {output_id!r}.") from None

    def _virtual_model(self, model_id: str) -> dict[str, Any]:
        try:
            model = self.database.get_virtual_model(bindable_text(model_id))
        except RecordNotFound:
            model = None
        if model is None or not model["active"]:
            choices = ", ".join(m["id"] for m in self.database.list_virtual_models())
            raise NotFoundError(f"No virtual model {model_id!r}; choose one of {choices}.")
        return model

    # -- decoded images -------------------------------------------------------------------------

    def _garment_image(self, garment: dict[str, Any]) -> Image.Image:
        with self._images_lock:
            image = self._images.get(garment["id"])
            if image is not None:
                self._images.move_to_end(garment["id"])
                return image
        image = ingest_bytes(self.files.read(garment["original_image_url"])).image
        self._remember_image(garment["id"], image)
        return image

    def _remember_image(self, garment_id: str, image: Image.Image) -> None:
        with self._images_lock:
            self._images[garment_id] = image
            while len(self._images) > IMAGE_CACHE_SIZE:
                self._images.popitem(last=False)

    @staticmethod
    def _public_garment(garment: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in garment.items() if key != "owner_id"}

    @staticmethod
    def _public_generation(generation: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in generation.items() if key != "worker"}  # the server's host and pid


def _generation_quota_error(plan: Plan, reached: GenerationLimitReached) -> QuotaExceededError:
    if reached.limit == "per_day":
        return QuotaExceededError(
            f"Your {plan.name} plan allows {plan.generations_per_day} generations a day and you have used "
            f"{reached.used}; it resets at 00:00 UTC, in {resets_in()}.{upgrade_hint(plan)}")
    return QuotaExceededError(
        f"Your {plan.name} plan runs {plan.concurrent_jobs} jobs at once and {reached.used} are queued or "
        f"running; wait for one to finish.{upgrade_hint(plan)}")


def _cut_out_problem(garment: dict[str, Any]) -> str | None:
    """Why no job can be made from the garment yet, or None."""
    if garment["status"] == "segmented":
        return None
    reason = f" The cut-out failed: {garment['error_message']}" if garment["error_message"] else ""
    return f"This garment has no usable cut-out yet.{reason} Segment it again first."


def _utc_iso(value: str) -> str:
    """An ISO date or time as the database's UTC timestamps are written; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"Give the date as YYYY-MM-DD (or an ISO time), not {value!r}.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows([_csv_cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: colour names are typed by sellers, and "=..." would run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _colour_name(value: object, what: str) -> str:
    """A colour name the seller typed, lowercase with single spaces; "" when None or blank."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"A {what} name is text such as navy, not {value!r}.")
    # control characters (and lone surrogates) become spaces, and runs of spaces one
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in value or "").split()).lower()
    if len(name) > MAX_COLOR_NAME_LENGTH:
        raise InputError(f"A {what} name can be at most {MAX_COLOR_NAME_LENGTH} characters long.")
    return name


def _suggested_title(garment: dict[str, Any]) -> dict[str, Any]:
    """The title the attributes suggest, unless the seller wrote their own."""
    if garment.get("title_source") == "user":
        return {}
    return {"title": suggest_title(garment.get("category"), garment.get("detected_color"),
                                   garment.get("secondary_color"), garment.get("pattern"),
                                   garment.get("garment_type")),
            "title_source": "detected"}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _encode_mask(mask: np.ndarray) -> bytes:
    # 1-bit PNG: a binary mask loses nothing, and encoding a 12-megapixel one takes ~30 ms instead of ~200 ms.
    ok, encoded = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise RuntimeError("could not encode the mask as PNG")
    return encoded.tobytes()


def _warm_up_photo() -> Image.Image:
    """A dark T-shirt-sized block on a light floor: enough for every cut-out and category model to run."""
    pixels = np.full((320, 240, 3), 205, np.uint8)
    pixels[70:260, 60:180] = (40, 48, 70)
    pixels[70:120, 25:215] = (40, 48, 70)
    return Image.fromarray(pixels)


def _encode_output(output: RenderedOutput, file_format: str) -> bytes:
    """The output's file; generated images carry the AI-disclosure metadata."""
    if output.ai_generated:
        return encode_with_disclosure(output.image, file_format)
    return encode_image(output.image, file_format)


def _decode_mask(data: bytes) -> np.ndarray:
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise StudioError("The stored cut-out cannot be read; segment the garment again.")
    return mask


def _display_name(name: str) -> str:
    """The uploaded file's name, for display only: no folders, no control characters, bounded length."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:120] or "photo"


def _page(limit: int, offset: int) -> tuple[int, int]:
    try:
        limit, offset = int(limit), int(offset)
    except (TypeError, ValueError, OverflowError):
        raise InputError("limit and offset must be whole numbers.") from None
    if not 1 <= limit <= 500 or offset < 0:
        raise InputError("limit must be between 1 and 500 and offset at least 0.")
    return limit, min(offset, _MAX_OFFSET)  # past every row, and within SQLite's integers


_MAX_OFFSET = 2**62


def _names(values: Any, what: str, example: str) -> list[str]:
    """Names given to the API as a list; one name alone counts as a list of one."""
    if values is None:
        return []
    if isinstance(values, str):
        return [values] if values.strip() else []
    if not isinstance(values, (list, tuple)) or not all(isinstance(value, str) for value in values):
        raise InputError(f"Give the {what} as a list of names such as [{example!r}], not {values!r}.")
    return list(values)


def _unexpected(error: BaseException) -> str:
    return f"Unexpected error ({type(error).__name__}: {redact_paths(str(error))}). The job was not saved; try again."
