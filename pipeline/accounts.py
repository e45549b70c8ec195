"""Seller accounts: email and password (scrypt), API tokens, Hugging Face sign-in, and a limit on failed
sign-ins. Passwords and tokens are never stored, only their hashes; every check takes constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import defaultdict, deque

from pipeline.errors import InputError, NotFoundError
from pipeline.plans import PLANS
from storage import RecordNotFound, StudioDatabase
from storage.database import bindable_text

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "rs_"
FAILED_SIGN_INS_ALLOWED = 5
FAILED_SIGN_IN_WINDOW_S = 15 * 60
HF_EMAIL_DOMAIN = "users.huggingface.co"  # Hugging Face accounts become users named <username>@this
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, database: StudioDatabase):
        self.database = database
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def sign_up(self, email: str, password: str, plan: str = "free") -> dict:
        email = normalise_email(email)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
        if plan not in PLANS:
            raise InputError(f"Unknown plan {plan!r}; choose one of {', '.join(PLANS)}.")
        if self.database.find_user_by_email(email):
            raise InputError(f"An account for {email} exists already; sign in instead.")
        return _public_user(self.database.create_user(email, hash_password(password), plan))

    def authenticate(self, email: str, secret: str) -> dict | None:
        """The user whose password or live API token `secret` is, or None. After too many failures for one
        email, refuses everything for that email until the window has passed."""
        key = (email or "").strip().lower()
        if self._locked_out(key):
            return None
        user = self.database.find_user_by_email(key)
        secret = secret or ""
        if secret.startswith(TOKEN_PREFIX):
            owner = self.database.user_for_token_hash(hash_token(secret))
            accepted = owner is not None and user is not None and owner["id"] == user["id"]
        else:  # an unknown email costs the same scrypt as a known one
            stored = user["password_hash"] if user and user["password_hash"] else DUMMY_HASH
            accepted = verify_password(secret, stored) and user is not None and stored is not DUMMY_HASH
        if accepted:
            return _public_user(user)
        self._record_failure(key)
        return None

    def user_for_hugging_face(self, username: str) -> dict:
        """The user row of a Hugging Face account, created on first sign-in."""
        email = f"{username.lower()}@{HF_EMAIL_DOMAIN}"
        user = self.database.find_user_by_email(email) or self.database.create_user(email, None)
        return _public_user(user)

    def create_token(self, user_id: str, name: str) -> dict:
        """A new API token; its value is in the result once and never again."""
        name = " ".join(bindable_text(name).split())[:60] or "API token"
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        return {**self.database.create_api_token(user_id, name, hash_token(token)), "token": token}

    def list_tokens(self, user_id: str) -> list[dict]:
        return self.database.list_api_tokens(user_id)

    def revoke_token(self, user_id: str, token_id: str) -> dict:
        try:
            return self.database.revoke_api_token(user_id, bindable_text(token_id))
        except RecordNotFound:
            raise NotFoundError(f"No live API token with id {token_id!r}.") from None

    def _locked_out(self, key: str) -> bool:
        with self._lock:
            failures = self._failures[key]
            while failures and failures[0] < time.monotonic() - FAILED_SIGN_IN_WINDOW_S:
                failures.popleft()
            return len(failures) >= FAILED_SIGN_INS_ALLOWED

    def _record_failure(self, key: str) -> None:
        with self._lock:
            self._failures[key].append(time.monotonic())


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(email) or len(email) > 254:
        raise InputError(f"{email!r} is not an email address.")
    return email


def _public_user(user: dict) -> dict:
    return {key: value for key, value in user.items() if key != "password_hash"}


DUMMY_HASH = hash_password(secrets.token_hex(8))
