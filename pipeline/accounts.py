"""Seller accounts: email and password (scrypt), API tokens, Hugging Face sign-in, and limits on failed
sign-ins per email and per client. Passwords and tokens are never stored, only their hashes; every check takes
constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from pipeline.errors import InputError, NotFoundError
from pipeline.plans import PLANS
from storage import RecordNotFound, StudioDatabase
from storage.database import bindable_text

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "rs_"
FAILED_SIGN_INS_ALLOWED = 5  # per email, within the window
FAILED_SIGN_INS_PER_CLIENT = 20  # per client address, whatever emails it tries, within the window
FAILED_SIGN_IN_WINDOW_S = 15 * 60
MAX_TRACKED_KEYS = 10_000  # per limiter: its memory stays bounded whatever an attacker sends
MAX_EMAIL_LENGTH = 254
HF_EMAIL_DOMAIN = "users.huggingface.co"  # Hugging Face accounts become users named <username>@this
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
WRONG_CREDENTIALS = "Incorrect email, password or token."


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


@dataclass
class _Attempts:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class AttemptLimiter:
    """At most `allowed` failed attempts per key within `window_s`. An attempt still being checked counts as a
    failure until it ends, so concurrent guesses cannot slip past the limit. Keys are kept as digests and at most
    `max_keys` of them, oldest first out, so neither long nor many keys grow memory."""

    def __init__(self, allowed: int, window_s: float, max_keys: int = MAX_TRACKED_KEYS):
        self.allowed, self.window_s, self.max_keys = allowed, window_s, max_keys
        self._entries: OrderedDict[bytes, _Attempts] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, key: str) -> bool:
        """Reserves an attempt for `key`; False (nothing reserved) when the key is locked out."""
        with self._lock:
            entry = self._entry(_digest(key))
            if len(entry.failures) + entry.in_flight >= self.allowed:
                return False
            entry.in_flight += 1
            return True

    def end(self, key: str, failed: bool) -> None:
        with self._lock:
            digest = _digest(key)
            entry = self._entries.get(digest)
            if entry is None:  # evicted while in flight: only possible with max_keys in-flight attempts
                entry = self._entry(digest)
            entry.in_flight = max(0, entry.in_flight - 1)
            if failed:
                entry.failures.append(time.monotonic())

    def fail(self, key: str) -> None:
        """Records a failed attempt that needed no reservation (it cost nothing to check)."""
        with self._lock:
            self._entry(_digest(key)).failures.append(time.monotonic())

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        with self._lock:
            entry = self._entries.get(_digest(key))
            if entry is None or len(entry.failures) + entry.in_flight < self.allowed or not entry.failures:
                return 0.0
            return max(0.0, entry.failures[0] + self.window_s - time.monotonic())

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, digest: bytes) -> _Attempts:
        """The entry of `digest`, created if new, with expired failures dropped; marks it most recently used."""
        entry = self._entries.get(digest)
        if entry is None:
            self._make_room()
            entry = self._entries[digest] = _Attempts()
        self._entries.move_to_end(digest)
        self._expire(entry)
        return entry

    def _expire(self, entry: _Attempts) -> None:
        oldest_kept = time.monotonic() - self.window_s
        while entry.failures and entry.failures[0] < oldest_kept:
            entry.failures.popleft()

    def _make_room(self) -> None:
        if len(self._entries) < self.max_keys:
            return
        for digest, entry in list(self._entries.items()):
            self._expire(entry)
            if entry.in_flight == 0 and not entry.failures:
                del self._entries[digest]
        while len(self._entries) >= self.max_keys:  # every key still counts: forget the least recently used
            idle = next((digest for digest, entry in self._entries.items() if entry.in_flight == 0), None)
            if idle is None:
                return
            del self._entries[idle]


def _digest(key: str) -> bytes:
    return hashlib.sha256(bindable_text(key).encode()).digest()[:16]


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, and the API token it used (None: a password); or why not."""

    user: dict | None
    api_token_id: str | None = None
    refusal: str = ""
    locked_out: bool = False  # too many failures: the caller should wait, not retype


class Accounts:
    def __init__(self, database: StudioDatabase):
        self.database = database
        self.email_attempts = AttemptLimiter(FAILED_SIGN_INS_ALLOWED, FAILED_SIGN_IN_WINDOW_S)
        self.client_attempts = AttemptLimiter(FAILED_SIGN_INS_PER_CLIENT, FAILED_SIGN_IN_WINDOW_S)

    def sign_up(self, email: str, password: str, plan: str = "free") -> dict:
        email = normalise_email(email)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
        if plan not in PLANS:
            raise InputError(f"Unknown plan {plan!r}; choose one of {', '.join(PLANS)}.")
        if self.database.find_user_by_email(email):
            raise InputError(f"An account for {email} exists already; sign in instead.")
        return _public_user(self.database.create_user(email, hash_password(password), plan))

    def sign_in(self, email: str, secret: str, client: str = "") -> SignIn:
        """Checks a password or an API token for `email`. A live API token always works (it cannot be guessed, so
        it is never locked out); passwords are limited per email and per `client` (the caller's address). Slow
        (scrypt): call it off any event loop."""
        key, secret = bindable_text(email).strip().lower(), secret if isinstance(secret, str) else ""
        if secret.startswith(TOKEN_PREFIX):
            return self._sign_in_with_token(key, secret, client)
        if not self.client_attempts.begin(client):
            return _locked_out("from your connection", self.client_attempts.retry_after(client))
        if not self.email_attempts.begin(key):
            self.client_attempts.end(client, failed=True)
            return _locked_out("for this email", self.email_attempts.retry_after(key))
        user = None
        try:
            user = self._check_password(key, secret)
        finally:
            self.email_attempts.end(key, failed=user is None)
            self.client_attempts.end(client, failed=user is None)
        return SignIn(user) if user else SignIn(None, refusal=WRONG_CREDENTIALS)

    def authenticate(self, email: str, secret: str, client: str = "") -> dict | None:
        """The user whose password or live API token `secret` is, or None."""
        return self.sign_in(email, secret, client).user

    def _check_password(self, key: str, password: str) -> dict | None:
        user = self.database.find_user_by_email(key) if len(key) <= MAX_EMAIL_LENGTH else None
        # an unknown email costs the same scrypt as a known one
        stored = user["password_hash"] if user and user["password_hash"] else DUMMY_HASH
        accepted = verify_password(password, stored) and user is not None and stored is not DUMMY_HASH
        return _public_user(user) if accepted else None

    def _sign_in_with_token(self, key: str, token: str, client: str) -> SignIn:
        found = self.database.use_api_token(hash_token(token))
        user = self.database.find_user_by_email(key) if found else None
        if found and user and found["user_id"] == user["id"]:
            return SignIn(_public_user(user), api_token_id=found["id"])
        self.client_attempts.fail(client)  # a wrong token never locks the seller's email
        return SignIn(None, refusal=WRONG_CREDENTIALS)

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


def _locked_out(whom: str, retry_after_s: float) -> SignIn:
    minutes = max(1, round(retry_after_s / 60))
    return SignIn(None, refusal=f"Too many failed sign-ins {whom}; try again in {minutes} min.", locked_out=True)


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(email) or len(email) > MAX_EMAIL_LENGTH:
        raise InputError(f"{email!r} is not an email address.")
    return email


def _public_user(user: dict) -> dict:
    return {key: value for key, value in user.items() if key != "password_hash"}


DUMMY_HASH = hash_password(secrets.token_hex(8))
