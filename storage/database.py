"""The studio's SQLite database, through sqlite-utils.

One file, WAL mode, foreign keys on. Each thread gets its own connection (Gradio runs handlers on worker
threads and sqlite3 connections must not cross threads); writes in this process are serialised by a lock
so that they never fight for SQLite's write lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from pipeline.errors import StorageError, storage_error
from storage.schema import account_key, migrations, usage_cutoff

LOCAL_USER_EMAIL = "local@resell.studio"
# A seller's starred outputs, newest first, each with the garment it shows: the Favourites listing.
LIST_FAVORITES_SQL = (
    "SELECT output_images.*, generations.garment_id FROM output_images "
    "JOIN generations ON generations.id = output_images.generation_id "
    "WHERE output_images.owner_id = ? AND output_images.is_favorite = 1 "
    "ORDER BY output_images.created_at DESC LIMIT ?")
INTERRUPTED_JOB_MESSAGE = "The studio stopped while this job was running. Nothing was saved; run it again."

JSON_COLUMNS = {"style_tags", "parameters", "model_ids", "mask_points", "preferred_marketplaces"}


class RecordNotFound(KeyError):
    """No row with that id (or not one the caller may see)."""

    def __init__(self, table: str, record_id: str):
        super().__init__(f"{table}:{record_id}")
        self.table = table
        self.record_id = record_id


@dataclass(frozen=True)
class GenerationLimits:
    """What an account may start: `per_day` generations created since `since`, and `concurrent` jobs pending or
    running at once."""
    since: str
    per_day: int
    concurrent: int


class GenerationLimitReached(Exception):
    """A generation was refused: `limit` ("per_day" or "concurrent") is reached, with `used` counted."""

    def __init__(self, limit: str, used: int):
        super().__init__(f"{limit} limit reached ({used} used)")
        self.limit = limit
        self.used = used


def bindable_text(value: Any) -> str:
    """`value` as text SQLite can bind: characters UTF-8 cannot encode (lone surrogates, which raw JSON can carry)
    become "?", so a hostile id is simply not found instead of crashing the query."""
    return str(value or "").encode("utf-8", "replace").decode("utf-8")


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {key: json.loads(value) if key in JSON_COLUMNS and isinstance(value, str) else value
            for key, value in row.items()}


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    return {key: json.dumps(value) if key in JSON_COLUMNS and not isinstance(value, str) else value
            for key, value in values.items()}


@contextmanager
def _immediate(db: Database) -> Iterator[None]:
    """sqlite-utils' `atomic()`, but beginning with BEGIN IMMEDIATE. Its plain BEGIN takes the write lock only at
    the first write: another process could write between this transaction's reads and its writes, and SQLite does
    not wait (busy_timeout) to turn a read into a write, failing at once with "database is locked"."""
    if db.conn.in_transaction:  # nested: atomic() makes it a savepoint of the outer transaction
        with db.atomic():
            yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


class StudioDatabase:
    """Schema, connections and the queries the studio makes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            with self._write_lock:
                migrations.apply(self.db)
        except sqlite3.OperationalError as error:
            self.close()
            raise storage_error(error) or StorageError(
                f"The studio database {self.path} cannot be opened ({error}). Its folder must be writable: SQLite "
                f"keeps {self.path.name}-wal and {self.path.name}-shm beside it.") from error

    # -- connections -------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        """This thread's sqlite-utils Database."""
        database = getattr(self._local, "database", None)
        if database is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=True)
            try:
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                conn.close()  # an unusable file (read-only folder, not a database) is not held open
                raise
            database = Database(conn)
            self._local.database = database
            with self._write_lock:
                self._connections.append(conn)
        return database

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction: all of it is stored, or none of it. It holds SQLite's write lock from the start,
        so nothing (another thread or process) writes between what it reads and what it writes. A full or
        read-only disk raises StorageError (rolled back, so the connection stays usable once the disk is fixed)."""
        with self._write_lock:
            db = self.db
            try:
                with _immediate(db):
                    yield db
            except sqlite3.OperationalError as error:
                translated = storage_error(error)
                if translated is None:
                    raise
                raise translated from error

    def close(self) -> None:
        """Closes every thread's connection; the object must not be used afterwards."""
        with self._write_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass  # created in a thread that has ended; sqlite closes it with the thread
            self._connections.clear()
        self._local = threading.local()

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    # -- generic helpers ---------------------------------------------------------------------

    def _get(self, table: str, record_id: str) -> dict[str, Any]:
        rows = list(self.db.query(f"SELECT * FROM [{table}] WHERE id = ?", [record_id]))
        if not rows:
            raise RecordNotFound(table, record_id)
        return _decode(rows[0])

    def _update(self, table: str, record_id: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.transaction() as db:
            if not db[table].count_where("id = ?", [record_id]):
                raise RecordNotFound(table, record_id)
            db[table].update(record_id, _encode(values))
        return self._get(table, record_id)

    # -- virtual models and users ------------------------------------------------------------

    def sync_virtual_models(self, models: Iterable[dict[str, Any]]) -> None:
        """Upserts the given cards and marks every other stored model inactive (rows stay for history)."""
        models = list(models)
        with self.transaction() as db:
            db.execute("UPDATE virtual_models SET active = 0")
            for model in models:
                db["virtual_models"].upsert(_encode({**model, "active": 1}), pk="id")

    def list_virtual_models(self, include_inactive: bool = False) -> list[dict[str, Any]]:
        where = "" if include_inactive else "WHERE active = 1"
        return [_decode(row) for row in self.db.query(f"SELECT * FROM virtual_models {where} ORDER BY id")]

    def get_virtual_model(self, model_id: str) -> dict[str, Any]:
        return self._get("virtual_models", model_id)

    def ensure_local_user(self) -> dict[str, Any]:
        """The single user that owns everything until accounts exist."""
        with self.transaction() as db:
            rows = list(db.query("SELECT id FROM users WHERE email = ?", [LOCAL_USER_EMAIL]))
            if rows:
                return self._get("users", rows[0]["id"])
            user_id = new_id()
            db["users"].insert({
                "id": user_id,
                "email": LOCAL_USER_EMAIL,
                "password_hash": None,
                "subscription_plan": "free",
                "preferred_model_id": None,
                "created_at": utc_now(),
            })
        return self._get("users", user_id)

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self._get("users", user_id)

    def create_user(self, email: str, password_hash: str | None, subscription_plan: str = "free") -> dict[str, Any]:
        user_id = new_id()
        with self.transaction() as db:
            db["users"].insert({"id": user_id, "email": email, "password_hash": password_hash,
                                "subscription_plan": subscription_plan, "preferred_model_id": None,
                                "created_at": utc_now()})
        return self.get_user(user_id)

    def find_user_by_email(self, email: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM users WHERE email = ?", [email]))
        return rows[0] if rows else None

    def create_api_token(self, user_id: str, name: str, token_hash: str) -> dict[str, Any]:
        token_id = new_id()
        with self.transaction() as db:
            db["api_tokens"].insert({"id": token_id, "user_id": user_id, "name": name, "token_hash": token_hash,
                                     "created_at": utc_now()})
        return self._public_token(self._get("api_tokens", token_id))

    def list_api_tokens(self, user_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created_at", [user_id])
        return [self._public_token(row) for row in rows]

    def revoke_api_token(self, user_id: str, token_id: str) -> dict[str, Any]:
        with self.transaction() as db:
            cursor = db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? "
                                "AND revoked_at IS NULL", [utc_now(), token_id, user_id])
            if cursor.rowcount != 1:
                raise RecordNotFound("api_tokens", token_id)
        return self._public_token(self._get("api_tokens", token_id))

    def user_for_token_hash(self, token_hash: str) -> dict[str, Any] | None:
        """The owner of a live (not revoked) token, noting its use."""
        token = self.use_api_token(token_hash)
        return self.get_user(token["user_id"]) if token else None

    def use_api_token(self, token_hash: str) -> dict[str, Any] | None:
        """The `id` and `user_id` of a live (not revoked) token, noting its use; None for any other."""
        with self.transaction() as db:
            token = self.live_api_token(token_hash)
            if token:
                db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", [utc_now(), token["id"]])
        return token

    def live_api_token(self, token_hash: str) -> dict[str, Any] | None:
        """The `id` and `user_id` of a live (not revoked) token, or None; reads only."""
        row = self.db.execute("SELECT id, user_id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                              [token_hash]).fetchone()
        return {"id": row[0], "user_id": row[1]} if row else None

    def credential_is_live(self, user_id: str, api_token_id: str | None) -> bool:
        """Whether the user still exists and, when a session was opened with an API token, that token is live."""
        if api_token_id is None:
            sql, params = "SELECT 1 FROM users WHERE id = ?", [user_id]
        else:
            sql = "SELECT 1 FROM api_tokens WHERE id = ? AND user_id = ? AND revoked_at IS NULL"
            params = [api_token_id, user_id]
        return self.db.execute(sql, params).fetchone() is not None

    @staticmethod
    def _public_token(row: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in row.items() if key != "token_hash"}

    def update_user(self, user_id: str, **values: Any) -> dict[str, Any]:
        return self._update("users", user_id, values)

    def delete_user(self, user_id: str) -> list[str]:
        """Deletes the user with everything they own (the schema cascades); returns the file paths that
        pointed at their images, for the caller to delete."""
        with self.transaction() as db:
            files = self._owner_files(db, user_id)
            cursor = db.execute("DELETE FROM users WHERE id = ?", [user_id])
            if cursor.rowcount != 1:
                raise RecordNotFound("users", user_id)
        return files

    def get_persona_photo(self, owner_id: str, model_id: str, family: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM persona_photos WHERE owner_id = ? AND model_id = ? AND family = ?",
                                  [owner_id, model_id, family]))
        return rows[0] if rows else None

    def set_persona_photo(self, owner_id: str, model_id: str, family: str, image_url: str, file_bytes: int,
                          source: str, seed: int | None = None) -> tuple[dict[str, Any], str | None]:
        """Stores the seller's reference photo of a persona for a family, replacing any; returns the row and the
        replaced photo's file path (for the caller to delete), or None."""
        with self.transaction() as db:
            old = list(db.query("SELECT id, image_url FROM persona_photos WHERE owner_id = ? AND model_id = ? "
                                "AND family = ?", [owner_id, model_id, family]))
            db.execute("DELETE FROM persona_photos WHERE owner_id = ? AND model_id = ? AND family = ?",
                       [owner_id, model_id, family])
            photo_id = new_id()
            db["persona_photos"].insert({"id": photo_id, "owner_id": owner_id, "model_id": model_id, "family": family,
                                         "image_url": image_url, "file_bytes": file_bytes, "source": source,
                                         "seed": seed, "created_at": utc_now()})
        return self._get("persona_photos", photo_id), old[0]["image_url"] if old else None

    def delete_persona_photo(self, owner_id: str, model_id: str, family: str) -> str | None:
        """Forgets the reference photo; returns its file path, or None when there was none."""
        with self.transaction() as db:
            old = list(db.query("SELECT image_url FROM persona_photos WHERE owner_id = ? AND model_id = ? "
                                "AND family = ?", [owner_id, model_id, family]))
            db.execute("DELETE FROM persona_photos WHERE owner_id = ? AND model_id = ? AND family = ?",
                       [owner_id, model_id, family])
        return old[0]["image_url"] if old else None

    def owner_files(self, user_id: str) -> list[str]:
        return self._owner_files(self.db, user_id)

    def storage_bytes(self, user_id: str) -> int:
        """The bytes of every file the user's rows point at: originals, cut-outs, thumbnails and outputs."""
        return self.db.execute(
            "SELECT (SELECT coalesce(sum(coalesce(original_bytes, 0) + coalesce(mask_bytes, 0) "
            "+ coalesce(thumbnail_bytes, 0)), 0) FROM garments "
            "WHERE owner_id = :owner) + (SELECT coalesce(sum(file_bytes), 0) FROM output_images "
            "WHERE owner_id = :owner) + (SELECT coalesce(sum(file_bytes), 0) FROM persona_photos "
            "WHERE owner_id = :owner)", {"owner": user_id}).fetchone()[0]

    def files_without_size(self) -> list[tuple[str, str, str, str]]:
        """(table, row id, size column, file path) of each stored file whose size was never recorded: rows
        written before sizes were (migration m005)."""
        sql = ("SELECT 'garments', id, 'original_bytes', original_image_url FROM garments "
               "WHERE original_bytes IS NULL "
               "UNION ALL SELECT 'garments', id, 'mask_bytes', mask_image_url FROM garments "
               "WHERE mask_bytes IS NULL AND mask_image_url IS NOT NULL "
               "UNION ALL SELECT 'garments', id, 'thumbnail_bytes', thumbnail_url FROM garments "
               "WHERE thumbnail_bytes IS NULL AND thumbnail_url IS NOT NULL "
               "UNION ALL SELECT 'output_images', id, 'file_bytes', image_url FROM output_images "
               "WHERE file_bytes IS NULL")
        return [tuple(row) for row in self.db.execute(sql).fetchall()]

    def record_file_sizes(self, sizes: Iterable[tuple[str, str, str, int]]) -> None:
        """Stores sizes found by `files_without_size`: (table, row id, size column, bytes)."""
        allowed = {("garments", "original_bytes"), ("garments", "mask_bytes"), ("garments", "thumbnail_bytes"),
                   ("output_images", "file_bytes")}
        with self.transaction() as db:
            for table, row_id, column, size in sizes:
                if (table, column) not in allowed:
                    raise ValueError(f"{table}.{column} is not a file size")
                db.execute(f"UPDATE [{table}] SET [{column}] = ? WHERE id = ?", [size, row_id])

    @staticmethod
    def _owner_files(db: Database, user_id: str) -> list[str]:
        sql = ("SELECT original_image_url AS url FROM garments WHERE owner_id = :owner "
               "UNION ALL SELECT mask_image_url FROM garments WHERE owner_id = :owner "
               "UNION ALL SELECT thumbnail_url FROM garments WHERE owner_id = :owner "
               "UNION ALL SELECT output_images.image_url FROM output_images "
               "JOIN generations ON generations.id = output_images.generation_id "
               "JOIN garments ON garments.id = generations.garment_id WHERE garments.owner_id = :owner "
               "UNION ALL SELECT image_url FROM persona_photos WHERE owner_id = :owner")
        return [row["url"] for row in db.query(sql, {"owner": user_id}) if row["url"]]

    # -- garments ----------------------------------------------------------------------------

    def create_garment(self, owner_id: str, original_image_url: str, width: int, height: int,
                       original_filename: str | None = None, original_bytes: int | None = None) -> dict[str, Any]:
        garment_id = new_id()
        with self.transaction() as db:
            db["garments"].insert({
                "id": garment_id,
                "owner_id": owner_id,
                "original_image_url": original_image_url,
                "original_filename": original_filename,
                "original_bytes": original_bytes,
                "width": width,
                "height": height,
                "status": "uploaded",
                "created_at": utc_now(),
            })
        return self.get_garment(garment_id)

    def get_garment(self, garment_id: str) -> dict[str, Any]:
        return self._get("garments", garment_id)

    def update_garment(self, garment_id: str, **values: Any) -> dict[str, Any]:
        return self._update("garments", garment_id, values)

    def delete_garment(self, garment_id: str) -> list[str]:
        """Deletes the garment with its generations and outputs; returns the file paths they pointed at."""
        with self.transaction() as db:
            garment = self._get("garments", garment_id)
            files = [garment["original_image_url"], garment["mask_image_url"], garment["thumbnail_url"]] + [
                row["image_url"] for row in db.query(
                    "SELECT output_images.image_url FROM output_images JOIN generations "
                    "ON generations.id = output_images.generation_id WHERE generations.garment_id = ?", [garment_id])]
            db.execute("DELETE FROM garments WHERE id = ?", [garment_id])
        return [url for url in files if url]

    def list_garments(self, owner_id: str, limit: int = 50, offset: int = 0, *, category: str | None = None,
                      since: str | None = None, status: str | None = None,
                      oldest_first: bool = False) -> list[dict[str, Any]]:
        """The owner's garments, newest first (or oldest first), optionally of one category or status and
        created at or after `since` (an ISO timestamp in UTC)."""
        sql, params = "SELECT * FROM garments WHERE owner_id = ?", [owner_id]
        for column, operator, value in (("category", "=", category), ("status", "=", status),
                                        ("created_at", ">=", since)):
            if value is not None:
                sql += f" AND {column} {operator} ?"
                params.append(value)
        order = "ASC" if oldest_first else "DESC"
        sql += f" ORDER BY created_at {order}, id LIMIT ? OFFSET ?"
        return [_decode(row) for row in self.db.query(sql, params + [limit, offset])]

    # -- generations ---------------------------------------------------------------------------

    def create_generation(self, garment_id: str, target_model_id: str, backend: str, *,
                          parameters: dict[str, Any], prompt_used: str | None = None,
                          negative_prompt: str | None = None, batch_size: int = 1, seed: int | None = None,
                          model_ids: dict[str, Any] | None = None, rerun_of: str | None = None,
                          limits: GenerationLimits | None = None) -> dict[str, Any]:
        """A pending generation, recorded in the usage ledger. With `limits`, counting what the owner used and
        storing the job are one transaction, so simultaneous calls cannot pass a limit; raises
        GenerationLimitReached (storing nothing) when one is reached."""
        generation_id = new_id()
        with self.transaction() as db:
            db["generations"].insert(_encode({
                "id": generation_id,
                "garment_id": garment_id,
                "target_model_id": target_model_id,
                "status": "pending",
                "prompt_used": prompt_used,
                "negative_prompt": negative_prompt,
                "batch_size": batch_size,
                "seed": seed,
                "parameters": parameters,
                "backend": backend,
                "model_ids": model_ids or {},
                "rerun_of": rerun_of,
                "created_at": utc_now(),
            }))  # first, so that a missing garment fails on the foreign key
            owner_id, email = db.execute(
                "SELECT users.id, users.email FROM garments JOIN users ON users.id = garments.owner_id "
                "WHERE garments.id = ?", [garment_id]).fetchone()
            if limits is not None:
                self._check_limits(db, owner_id, account_key(email), limits)
            self._record_usage(db, account_key(email), generation_id)
        return self.get_generation(generation_id)

    def _check_limits(self, db: Database, owner_id: str, key: str, limits: GenerationLimits) -> None:
        used = self._usage_since(db, key, limits.since)
        if used >= limits.per_day:
            raise GenerationLimitReached("per_day", used)
        active = self._active_generations(db, owner_id) - 1  # not the one being created
        if active >= limits.concurrent:
            raise GenerationLimitReached("concurrent", active)

    @staticmethod
    def _record_usage(db: Database, key: str, generation_id: str) -> None:
        db.execute("DELETE FROM usage_events WHERE created_at < ?", [usage_cutoff()])
        db["usage_events"].insert({"id": new_id(), "account_key": key, "kind": "generation",
                                   "generation_id": generation_id, "created_at": utc_now()})

    @staticmethod
    def _usage_since(db: Database, key: str, since: str) -> int:
        return db.execute("SELECT count(*) FROM usage_events WHERE account_key = ? AND created_at >= ?",
                          [key, since]).fetchone()[0]

    @staticmethod
    def _active_generations(db: Database, owner_id: str) -> int:
        return db.execute(
            "SELECT count(*) FROM generations JOIN garments ON garments.id = generations.garment_id "
            "WHERE garments.owner_id = ? AND generations.status IN ('pending', 'processing')", [owner_id]).fetchone()[0]

    def get_generation(self, generation_id: str) -> dict[str, Any]:
        return self._get("generations", generation_id)

    def list_generations(self, owner_id: str, garment_id: str | None = None,
                         limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        sql = ("SELECT generations.* FROM generations JOIN garments ON garments.id = generations.garment_id "
               "WHERE garments.owner_id = ?")
        params: list[Any] = [owner_id]
        if garment_id is not None:
            sql += " AND generations.garment_id = ?"
            params.append(garment_id)
        sql += " ORDER BY generations.created_at DESC, generations.id LIMIT ? OFFSET ?"
        return [_decode(row) for row in self.db.query(sql, params + [limit, offset])]

    def count_generations_since(self, owner_id: str, since: str) -> int:
        """Generations created since `since` by the owner's email, from the usage ledger: those of deleted
        garments, and of a deleted account with the same email, still count."""
        return self._usage_since(self.db, account_key(self.get_user(owner_id)["email"]), since)

    def count_active_generations(self, owner_id: str) -> int:
        return self._active_generations(self.db, owner_id)

    def generations_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in statuses)
        rows = self.db.query(f"SELECT * FROM generations WHERE status IN ({marks}) ORDER BY created_at", statuses)
        return [_decode(row) for row in rows]

    def start_generation(self, generation_id: str, worker: str | None = None) -> dict[str, Any]:
        """pending -> processing, by `worker` (see `this_worker`). Refuses any other starting state, so a job
        cannot run twice."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE generations SET status = 'processing', started_at = ?, worker = ? "
                "WHERE id = ? AND status = 'pending'",
                [utc_now(), worker, generation_id],
            )
            if cursor.rowcount != 1:
                raise ValueError(f"generation {generation_id} is not pending")
        return self.get_generation(generation_id)

    def complete_generation(self, generation_id: str, outputs: list[dict[str, Any]]) -> dict[str, Any]:
        """processing -> completed, with all of its output rows, in one transaction."""
        now = utc_now()
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE generations SET status = 'completed', completed_at = ?, error_message = NULL "
                "WHERE id = ? AND status = 'processing'",
                [now, generation_id],
            )
            if cursor.rowcount != 1:
                raise ValueError(f"generation {generation_id} is not processing")
            owner_id = db.execute("SELECT garments.owner_id FROM generations JOIN garments "
                                  "ON garments.id = generations.garment_id WHERE generations.id = ?",
                                  [generation_id]).fetchone()[0]
            db["output_images"].insert_all(
                {"id": new_id(), "generation_id": generation_id, "owner_id": owner_id, "created_at": now, **output}
                for output in outputs
            )
        return self.get_generation(generation_id)

    def fail_generation(self, generation_id: str, message: str) -> dict[str, Any]:
        with self.transaction() as db:
            db.execute(
                "UPDATE generations SET status = 'failed', error_message = ?, completed_at = ? "
                "WHERE id = ? AND status IN ('pending', 'processing')",
                [message, utc_now(), generation_id],
            )
        return self.get_generation(generation_id)

    def fail_interrupted_generations(self, message: str = INTERRUPTED_JOB_MESSAGE,
                                     still_running: Callable[[str | None], bool] = lambda worker: False
                                     ) -> list[str]:
        """Marks each job left `processing` by a crash as failed, except those whose worker `still_running`
        says is alive; returns the ids marked."""
        with self.transaction() as db:
            ids = [row["id"] for row in db.query("SELECT id, worker FROM generations WHERE status = 'processing'")
                   if not still_running(row["worker"])]
            now = utc_now()
            for generation_id in ids:
                db.execute("UPDATE generations SET status = 'failed', error_message = ?, completed_at = ? "
                           "WHERE id = ?", [message, now, generation_id])
        return ids

    # -- output images -------------------------------------------------------------------------

    def list_outputs(self, generation_id: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT * FROM output_images WHERE generation_id = ? ORDER BY image_index, rowid", [generation_id]
        )
        return [dict(row) for row in rows]

    def get_output(self, output_id: str) -> dict[str, Any]:
        return self._get("output_images", output_id)

    def output_owner(self, output_id: str) -> str:
        rows = list(self.db.query(
            "SELECT garments.owner_id FROM output_images "
            "JOIN generations ON generations.id = output_images.generation_id "
            "JOIN garments ON garments.id = generations.garment_id WHERE output_images.id = ?",
            [output_id],
        ))
        if not rows:
            raise RecordNotFound("output_images", output_id)
        return rows[0]["owner_id"]

    def set_favorite(self, output_id: str, is_favorite: bool) -> dict[str, Any]:
        return self._update("output_images", output_id, {"is_favorite": int(bool(is_favorite))})

    def record_download(self, output_id: str) -> dict[str, Any]:
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE output_images SET download_count = download_count + 1 WHERE id = ?", [output_id]
            )
            if cursor.rowcount != 1:
                raise RecordNotFound("output_images", output_id)
        return self.get_output(output_id)

    def list_favorites(self, owner_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(row) for row in self.db.query(LIST_FAVORITES_SQL, [owner_id, limit])]

    def marketplace_outputs(self, owner_id: str, marketplace: str, favorites_only: bool = False
                            ) -> list[dict[str, Any]]:
        """The owner's outputs made for `marketplace`, each with its `garment_id`: garments oldest first, and
        within a garment the real photos (not AI-generated) first, then by age."""
        favorites = " AND output_images.is_favorite = 1" if favorites_only else ""
        rows = self.db.query(
            "SELECT output_images.*, generations.garment_id FROM output_images "
            "JOIN generations ON generations.id = output_images.generation_id "
            "JOIN garments ON garments.id = generations.garment_id "
            f"WHERE output_images.owner_id = ? AND output_images.marketplace = ?{favorites} "
            "ORDER BY garments.created_at, garments.id, output_images.is_ai_generated, output_images.created_at, "
            "output_images.generation_id, output_images.image_index", [owner_id, marketplace])
        return [dict(row) for row in rows]

    def query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """SQLite's plan for a query, one line per step (for tests and benchmarks)."""
        return [row[3] for row in self.db.execute("EXPLAIN QUERY PLAN " + sql, list(params)).fetchall()]

    def referenced_files(self) -> set[str]:
        """Every file path the database points at."""
        sql = ("SELECT original_image_url AS url FROM garments UNION SELECT mask_image_url FROM garments "
               "UNION SELECT thumbnail_url FROM garments UNION SELECT image_url FROM output_images "
               "UNION SELECT image_url FROM persona_photos")
        return {row["url"] for row in self.db.query(sql) if row["url"]}
