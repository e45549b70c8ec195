"""The database schema, created and upgraded by sqlite-utils `Migrations`.

Tables follow the seed's data model (users, garments, generations, output_images, virtual_models), with API tokens
and a usage ledger (usage_events) that the daily quota counts.
Enum columns are checked by the database itself, from the tuples below.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

SUBSCRIPTION_PLANS = ("free", "pro", "enterprise")
GARMENT_CATEGORIES = ("top", "bottom", "dress", "outerwear")
GARMENT_PATTERNS = ("solid", "striped", "checked", "floral", "print", "graphic")
GARMENT_STATUSES = ("uploaded", "segmented", "failed")
GENERATION_STATUSES = ("pending", "processing", "completed", "failed")
ASPECT_RATIOS = ("1:1", "4:5", "3:4")
MODEL_KINDS = ("ghost", "persona")

migrations = Migrations("resell-studio")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"CHECK ({column} IN ({quoted}))"


@migrations()
def m001_initial(db: Database) -> None:
    db.execute(f"""
        CREATE TABLE virtual_models (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL {_one_of("kind", MODEL_KINDS)},
            gender TEXT,
            body_type TEXT,
            ethnicity TEXT,
            style_tags TEXT NOT NULL DEFAULT '[]',
            backend TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
        )""")
    db.execute(f"""
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT,
            subscription_plan TEXT NOT NULL DEFAULT 'free' {_one_of("subscription_plan", SUBSCRIPTION_PLANS)},
            preferred_model_id TEXT REFERENCES virtual_models(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        )""")
    db.execute(f"""
        CREATE TABLE garments (
            id TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            original_image_url TEXT NOT NULL,
            original_filename TEXT,
            width INTEGER NOT NULL CHECK (width > 0),
            height INTEGER NOT NULL CHECK (height > 0),
            category TEXT {_one_of("category", GARMENT_CATEGORIES)},
            detected_color TEXT,
            detected_color_hex TEXT CHECK (detected_color_hex GLOB '#[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
            mask_image_url TEXT,
            segmentation_backend TEXT,
            status TEXT NOT NULL DEFAULT 'uploaded' {_one_of("status", GARMENT_STATUSES)},
            error_message TEXT,
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX garments_by_owner ON garments (owner_id, created_at)")
    db.execute(f"""
        CREATE TABLE generations (
            id TEXT PRIMARY KEY,
            garment_id TEXT NOT NULL REFERENCES garments(id) ON DELETE CASCADE,
            target_model_id TEXT NOT NULL REFERENCES virtual_models(id),
            status TEXT NOT NULL DEFAULT 'pending' {_one_of("status", GENERATION_STATUSES)},
            prompt_used TEXT,
            negative_prompt TEXT,
            batch_size INTEGER NOT NULL DEFAULT 1 CHECK (batch_size >= 1),
            seed INTEGER,
            parameters TEXT NOT NULL DEFAULT '{{}}',
            backend TEXT NOT NULL,
            model_ids TEXT NOT NULL DEFAULT '{{}}',
            error_message TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT
        )""")
    db.execute("CREATE INDEX generations_by_garment ON generations (garment_id, created_at)")
    db.execute("CREATE INDEX generations_by_status ON generations (status)")
    db.execute(f"""
        CREATE TABLE output_images (
            id TEXT PRIMARY KEY,
            generation_id TEXT NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
            image_url TEXT NOT NULL,
            image_index INTEGER NOT NULL DEFAULT 0,
            aspect_ratio TEXT NOT NULL {_one_of("aspect_ratio", ASPECT_RATIOS)},
            marketplace TEXT,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            is_favorite INTEGER NOT NULL DEFAULT 0 CHECK (is_favorite IN (0, 1)),
            download_count INTEGER NOT NULL DEFAULT 0 CHECK (download_count >= 0),
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX output_images_by_generation ON output_images (generation_id, image_index)")
    db.execute("CREATE INDEX output_images_favorites ON output_images (generation_id) WHERE is_favorite = 1")


CATEGORY_SOURCES = ("heuristic", "clip", "user")


@migrations()
def m002_refinement_and_category_source(db: Database) -> None:
    """Click-to-refine points stored with the mask; where the category came from, and how sure it was."""
    db.execute("ALTER TABLE garments ADD COLUMN mask_points TEXT NOT NULL DEFAULT '[]'")
    db.execute(f"ALTER TABLE garments ADD COLUMN category_source TEXT {_one_of('category_source', CATEGORY_SOURCES)}")
    db.execute("ALTER TABLE garments ADD COLUMN category_confidence REAL "
               "CHECK (category_confidence BETWEEN 0 AND 1)")


@migrations()
def m003_on_model_generation(db: Database) -> None:
    """Per-image seeds, the garment-fidelity score, AI-generated outputs, and re-runs of past generations."""
    db.execute("ALTER TABLE output_images ADD COLUMN seed INTEGER")
    db.execute("ALTER TABLE output_images ADD COLUMN is_ai_generated INTEGER NOT NULL DEFAULT 0 "
               "CHECK (is_ai_generated IN (0, 1))")
    db.execute("ALTER TABLE output_images ADD COLUMN fidelity_delta_e REAL CHECK (fidelity_delta_e >= 0)")
    db.execute("ALTER TABLE output_images ADD COLUMN fidelity_flagged INTEGER CHECK (fidelity_flagged IN (0, 1))")
    db.execute("ALTER TABLE generations ADD COLUMN rerun_of TEXT REFERENCES generations(id) ON DELETE SET NULL")


@migrations()
def m004_api_tokens(db: Database) -> None:
    """API tokens per user: only a SHA-256 of each token is kept; revoked tokens stay for the record."""
    db.execute("""
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        )""")
    db.execute("CREATE INDEX api_tokens_by_user ON api_tokens (user_id)")


@migrations()
def m005_output_owner_and_file_sizes(db: Database) -> None:
    """Each output row names its owner, so a seller's favourites come from one index however many outputs the
    studio holds; every stored file's size is recorded, so the storage quota is a sum, not a walk over the
    disk (sizes of files stored before this migration are filled in when the studio opens); and each running
    job names the process running it."""
    db.execute("ALTER TABLE output_images ADD COLUMN owner_id TEXT REFERENCES users(id) ON DELETE CASCADE")
    db.execute("UPDATE output_images SET owner_id = (SELECT garments.owner_id FROM generations "
               "JOIN garments ON garments.id = generations.garment_id WHERE generations.id = output_images.generation_id)")
    db.execute("ALTER TABLE output_images ADD COLUMN file_bytes INTEGER CHECK (file_bytes >= 0)")
    db.execute("ALTER TABLE garments ADD COLUMN original_bytes INTEGER CHECK (original_bytes >= 0)")
    db.execute("ALTER TABLE garments ADD COLUMN mask_bytes INTEGER CHECK (mask_bytes >= 0)")
    db.execute("DROP INDEX output_images_favorites")
    db.execute("CREATE INDEX output_images_favorites ON output_images (owner_id, created_at) WHERE is_favorite = 1")
    db.execute("CREATE INDEX output_images_by_owner ON output_images (owner_id, file_bytes)")
    # Which process runs a job ("host:pid"), so recovery fails only the jobs of processes that are gone.
    db.execute("ALTER TABLE generations ADD COLUMN worker TEXT")


USAGE_KINDS = ("generation",)
USAGE_KEPT_DAYS = 2  # more than the UTC day the quota counts; older rows are purged, so the ledger is no history


def account_key(email: str) -> str:
    """Who used the studio, in the usage ledger: the same for every account made with this email, which itself
    is not kept."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def usage_cutoff() -> str:
    """Ledger rows created before this are purged."""
    oldest = datetime.now(timezone.utc) - timedelta(days=USAGE_KEPT_DAYS)
    return oldest.isoformat(timespec="milliseconds")


@migrations()
def m006_usage_ledger(db: Database) -> None:
    """A ledger of what each account used, which deleting garments or the account does not erase, so the daily
    quota cannot be won back that way. Rows name the account by a hash of its email and the generation by its id,
    with no foreign key; generations of the last two days are copied in."""
    db.execute(f"""
        CREATE TABLE usage_events (
            id TEXT PRIMARY KEY,
            account_key TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'generation' {_one_of("kind", USAGE_KINDS)},
            generation_id TEXT,
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX usage_events_by_account ON usage_events (account_key, created_at)")
    db.execute("CREATE INDEX usage_events_by_time ON usage_events (created_at)")  # for the purge
    recent = db.execute(
        "SELECT generations.id, generations.created_at, users.email FROM generations "
        "JOIN garments ON garments.id = generations.garment_id JOIN users ON users.id = garments.owner_id "
        "WHERE generations.created_at >= ?", [usage_cutoff()]).fetchall()
    db["usage_events"].insert_all(
        {"id": uuid.uuid4().hex, "account_key": account_key(email), "kind": "generation",
         "generation_id": generation_id, "created_at": created_at}
        for generation_id, created_at, email in recent)


@migrations()
def m007_closet(db: Database) -> None:
    """For whole closets: the marketplaces each seller last chose (a JSON list; NULL until they choose), a small
    thumbnail per garment with its size (counted in storage like the cut-out), and how much each output enlarged
    the garment's pixels (1.0 or NULL: not enlarged), so soft photos can be told apart."""
    db.execute("ALTER TABLE users ADD COLUMN preferred_marketplaces TEXT")
    db.execute("ALTER TABLE garments ADD COLUMN thumbnail_url TEXT")
    db.execute("ALTER TABLE garments ADD COLUMN thumbnail_bytes INTEGER CHECK (thumbnail_bytes >= 0)")
    db.execute("ALTER TABLE output_images ADD COLUMN enlargement REAL CHECK (enlargement > 0)")


CATEGORY_SOURCES_WITH_TRAINED = ("heuristic", "clip", "trained", "user")


@migrations()
def m008_trained_category_source(db: Database) -> None:
    """The studio's own trained category model is a category source too. SQLite cannot alter a CHECK constraint,
    and rebuilding the garments table would lose its other checks; widening the allowed set only loosens the
    constraint (no stored row can break it), which SQLite documents as safe to do by editing the schema text."""
    old = _one_of("category_source", CATEGORY_SOURCES)
    new = _one_of("category_source", CATEGORY_SOURCES_WITH_TRAINED)
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'garments'",
               [old, new])
    db.execute(f"PRAGMA schema_version = {version + 1}")
    db.execute("PRAGMA writable_schema = OFF")



ATTRIBUTE_SOURCES = ("detected", "user")


@migrations()
def m009_listing_words(db: Database) -> None:
    """What a listing says about the garment: a second colour (NULL: none), the pattern, what kind of garment it is
    ("t-shirt", "jeans"; NULL: only the category is known), the category the model thought next likeliest (the
    page asks the seller to choose between the two when unsure), and a listing title. `color_source` and
    `title_source` say whether the seller wrote them ('user': a new cut-out keeps them) or the studio did."""
    hex_check = "GLOB '#[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'"
    db.execute("ALTER TABLE garments ADD COLUMN secondary_color TEXT")
    db.execute(f"ALTER TABLE garments ADD COLUMN secondary_color_hex TEXT CHECK (secondary_color_hex {hex_check})")
    db.execute(f"ALTER TABLE garments ADD COLUMN pattern TEXT {_one_of('pattern', GARMENT_PATTERNS)}")
    db.execute(f"ALTER TABLE garments ADD COLUMN color_source TEXT {_one_of('color_source', ATTRIBUTE_SOURCES)}")
    db.execute("ALTER TABLE garments ADD COLUMN garment_type TEXT")
    db.execute(f"ALTER TABLE garments ADD COLUMN category_alternative TEXT "
               f"{_one_of('category_alternative', GARMENT_CATEGORIES)}")
    db.execute("ALTER TABLE garments ADD COLUMN title TEXT")
    db.execute(f"ALTER TABLE garments ADD COLUMN title_source TEXT {_one_of('title_source', ATTRIBUTE_SOURCES)}")


PERSONA_PHOTO_SOURCES = ("generated", "user")


@migrations()
def m010_persona_photos(db: Database) -> None:
    """Each seller's reference photo of a persona, per model family: made once from the card (`generated`, with
    its seed) or the seller's own photo of themselves or their model (`user`, private to that seller). Every on-model
    photo of the seller's closet reuses it, so the whole closet is worn by the same person."""
    db.execute(f"""
        CREATE TABLE persona_photos (
            id TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            model_id TEXT NOT NULL REFERENCES virtual_models(id),
            family TEXT NOT NULL,
            image_url TEXT NOT NULL,
            file_bytes INTEGER NOT NULL CHECK (file_bytes >= 0),
            source TEXT NOT NULL {_one_of("source", PERSONA_PHOTO_SOURCES)},
            seed INTEGER,
            created_at TEXT NOT NULL,
            UNIQUE (owner_id, model_id, family)
        )""")


@migrations()
def m011_pattern_fidelity(db: Database) -> None:
    """Each generated output's pattern check against the garment: how alike their detail is (0-1) and whether the
    pattern was lost, invented or changed kind."""
    db.execute("ALTER TABLE output_images ADD COLUMN pattern_similarity REAL "
               "CHECK (pattern_similarity BETWEEN 0 AND 1)")
    db.execute("ALTER TABLE output_images ADD COLUMN pattern_flagged INTEGER CHECK (pattern_flagged IN (0, 1))")
