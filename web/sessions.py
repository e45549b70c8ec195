"""Sign-in sessions, each bound to the account and the credential that opened it.

Gradio keeps its own cookie -> username map (`app.tokens`) and never forgets an entry by itself, so revoking an API
token or deleting an account would leave every browser or program session it opened working. Here a session
remembers the user id and the API token (if any) it was opened with, and is live only while both are: the
`SignInGuard` and `Access` ask on every request, so a session ends the moment its credential does, whichever
process revoked it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from storage import StudioDatabase

HF_SESSION_FALLBACK_S = 8 * 3600  # how long an ended Hugging Face session is remembered when it names no expiry


@dataclass(frozen=True)
class Session:
    user_id: str
    api_token_id: str | None  # None: opened with a password


class Sessions:
    def __init__(self, database: StudioDatabase):
        self.database = database
        self._open: dict[str, Session] = {}  # digest of the session cookie -> its session
        self._hugging_face: dict[str, tuple[str, float]] = {}  # digest of an OAuth access token -> (user, expiry)
        self._ended_hugging_face: dict[str, float] = {}  # digest -> when it would have expired anyway
        self._lock = threading.Lock()

    # -- sessions opened by the studio's sign-in (password or API token) --------------------------

    def open(self, user_id: str, api_token_id: str | None) -> str:
        """A new session for `user_id`; returns its secret (the cookie's value)."""
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._open[_digest(secret)] = Session(user_id, api_token_id)
        return secret

    def user_id(self, secret: str | None) -> str | None:
        """The user of a live session, or None. A session whose account was deleted or whose API token was
        revoked ends here."""
        if not secret:
            return None
        key = _digest(secret)
        with self._lock:
            session = self._open.get(key)
        if session is None:
            return None
        if not self.database.credential_is_live(session.user_id, session.api_token_id):
            self.end(secret)
            return None
        return session.user_id

    def end(self, secret: str | None) -> None:
        with self._lock:
            self._open.pop(_digest(secret or ""), None)

    def end_user(self, user_id: str) -> None:
        """Ends every session of the user: password, API-token and Hugging Face ones."""
        with self._lock:
            for key in [key for key, session in self._open.items() if session.user_id == user_id]:
                del self._open[key]
            for key, (owner, expires) in list(self._hugging_face.items()):
                if owner == user_id:
                    self._ended_hugging_face[key] = expires
                    del self._hugging_face[key]

    def end_api_token(self, api_token_id: str) -> None:
        with self._lock:
            for key in [key for key, session in self._open.items() if session.api_token_id == api_token_id]:
                del self._open[key]

    def count(self) -> int:
        with self._lock:
            return len(self._open)

    # -- Hugging Face sessions (Gradio's signed OAuth cookie, which the server cannot delete) --------

    def note_hugging_face(self, oauth_info: dict, user_id: str) -> None:
        """Remembers which user an OAuth session acts for, so that deleting the account can end it."""
        with self._lock:
            self._prune_hugging_face()
            self._hugging_face[_oauth_key(oauth_info)] = (user_id, _oauth_expiry(oauth_info))

    def hugging_face_ended(self, oauth_info: dict) -> bool:
        with self._lock:
            return _oauth_key(oauth_info) in self._ended_hugging_face

    def end_hugging_face(self, oauth_info: dict) -> None:
        """Ends one OAuth session for good: a copy of its cookie is refused from now on."""
        with self._lock:
            self._prune_hugging_face()
            key = _oauth_key(oauth_info)
            self._hugging_face.pop(key, None)
            self._ended_hugging_face[key] = _oauth_expiry(oauth_info)

    def _prune_hugging_face(self) -> None:
        now = time.time()
        self._hugging_face = {key: value for key, value in self._hugging_face.items() if value[1] >= now}
        self._ended_hugging_face = {key: until for key, until in self._ended_hugging_face.items() if until >= now}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _oauth_key(oauth_info: dict) -> str:
    """One OAuth sign-in, named by a digest of its access token (a new sign-in gets a new token)."""
    return _digest(str(oauth_info.get("access_token") or oauth_info.get("userinfo") or ""))


def _oauth_expiry(oauth_info: dict) -> float:
    expires = oauth_info.get("expires_at")
    return float(expires) if isinstance(expires, (int, float)) else time.time() + HF_SESSION_FALLBACK_S
