"""Files handed to Gradio, remembered per garment so that deleting a garment or an account leaves nothing served.

Gradio serves a file by copying it into its cache as `<cache>/<digest of its bytes>/<name>` (an upload lands the
same way) and keeps the copy, and its URL, until the cache is cleaned. So every file the UI and the API give Gradio
goes through `ServedFiles`, which notes its digest in the garment's folder here; previews and export zips are
written into that folder too. Deleting the garment removes the cache folders of those digests (and of the garment's
stored files: its upload, cut-out and photos), then the folder itself.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from gradio.processing_utils import hash_file
from gradio.utils import get_upload_folder
from PIL import Image

PREVIEW_QUALITY = 88
KEEP_WRITTEN_S = 10 * 60  # previews and export zips: Gradio copies them as soon as the handler returns
SWEEP_EVERY_S = 60
DIGESTS_FILE = "served.txt"
CLOSET = "_closet"  # the folder of files that span a seller's garments (marketplace zips)


class ServedFiles:
    def __init__(self, root: Path, gradio_cache: Path | None = None):
        self.root = root
        self.gradio_cache = Path(gradio_cache or get_upload_folder())
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    def preview(self, owner_id: str, garment_id: str, image: Image.Image, name: str) -> str:
        """`image` as a JPEG file to show for the garment; its earlier previews, copied by Gradio long since, go."""
        folder = self._folder(owner_id, garment_id, "previews")
        _remove_older_than(folder.iterdir(), time.time() - KEEP_WRITTEN_S)
        path = folder / f"{name}-{uuid.uuid4().hex[:8]}.jpg"
        image.convert("RGB").save(path, quality=PREVIEW_QUALITY)
        return self.served(owner_id, garment_id, path)

    def export_folder(self, owner_id: str, garment_id: str) -> Path:
        """A new folder for one export zip of the garment (pass the zip to `served` once written). Zips and
        previews older than a few minutes, which Gradio has copied long since, are removed."""
        self.remove_old_files()
        folder = self._folder(owner_id, garment_id, "exports") / uuid.uuid4().hex[:8]
        folder.mkdir()
        return folder

    def named_copy(self, owner_id: str, garment_id: str, source: Path, name: str) -> str:
        """`source` under the name `name`, so the seller's download is saved as `navy-top-ebay-1.jpg`, not as the
        data directory's id. A hard link where the disk allows (no bytes copied); not noted in the ledger: its
        bytes are the stored file's, whose Gradio copy deleting the garment removes anyway."""
        self.remove_old_files()
        folder = self._folder(owner_id, garment_id, "downloads") / uuid.uuid4().hex[:8]
        folder.mkdir()
        target = folder / name
        try:
            os.link(source, target)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(source, target)
        return str(target)

    def served(self, owner_id: str, garment_id: str, path: Path) -> str:
        """Notes that the file written at `path` (a preview, an export) is handed to Gradio for the garment."""
        digest = hash_file(path)
        with self._lock:
            with open(self.root / owner_id / garment_id / DIGESTS_FILE, "a") as ledger:
                ledger.write(f"{digest}\n")
        return str(path)

    def forget_garment(self, owner_id: str, garment_id: str, stored_digests: Iterable[str] = ()) -> None:
        """Removes every copy Gradio holds of what was served for the garment or stored for it (`stored_digests`:
        the `digests` of its files, taken before they were deleted), and the garment's folder here."""
        folder = self.root / owner_id / garment_id
        with self._lock:
            ledger = folder / DIGESTS_FILE
            noted = ledger.read_text().split() if ledger.is_file() else []
            self._remove_cached({*noted, *stored_digests})
            shutil.rmtree(folder, ignore_errors=True)

    def forget_owner(self, owner_id: str, stored_digests: Iterable[str] = ()) -> None:
        owner = self.root / owner_id
        for garment in [path.name for path in owner.iterdir()] if owner.is_dir() else []:
            self.forget_garment(owner_id, garment)
        with self._lock:
            self._remove_cached(set(stored_digests))
            shutil.rmtree(owner, ignore_errors=True)

    def remove_old_files(self) -> None:
        """At most once a minute: it walks every seller's folders, and photo taps call it."""
        now = time.time()
        with self._lock:
            if now - self._last_sweep < SWEEP_EVERY_S:
                return
            self._last_sweep = now
        cutoff = now - KEEP_WRITTEN_S
        for pattern in ("*/*/exports/*", "*/*/previews/*", "*/*/downloads/*"):
            _remove_older_than(self.root.glob(pattern), cutoff)

    def _remove_cached(self, digests: set[str]) -> None:
        for digest in digests:
            shutil.rmtree(self.gradio_cache / digest, ignore_errors=True)

    def _folder(self, owner_id: str, garment_id: str, kind: str) -> Path:
        folder = self.root / owner_id / garment_id / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _remove_older_than(paths: Iterable[Path], cutoff: float) -> None:
    for path in list(paths):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        except FileNotFoundError:  # removed by a concurrent request
            continue


def digests(paths: Iterable[Path]) -> list[str]:
    """Gradio's cache digests of files that exist."""
    return [hash_file(path) for path in paths if path.is_file()]
