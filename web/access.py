"""Who is calling: the one place that turns a request into the seller it acts for."""

from __future__ import annotations

import logging
import time
from typing import Any

import gradio as gr

from pipeline.accounts import Accounts, SignIn, hash_token
from pipeline.settings import check_auth, on_a_space
from pipeline.studio import Studio
from web.sessions import Sessions

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-studio-token"
SESSION_COOKIE_PREFIX = "access-token-"  # Gradio's session cookies: access-token-<app id>, access-token-unsecure-<id>
SIGN_IN_FIRST = "Sign in first: this studio has accounts."


class Access:
    """Who is calling.

    - `none`: everything belongs to the one local user (`make run`).
    - `password`: the sign-in page and `Client(url, auth=(email, password_or_token))`; each sign-in opens a session
      bound to that account and credential (web.sessions).
    - `huggingface`: "Sign in with Hugging Face" on a Space (`hf_oauth: true`); refused off a Space.
    With accounts, programs may also send an API token in the `x-studio-token` header, and every UI event and API
    call acts as that user, and is refused without one."""

    def __init__(self, studio: Studio, mode: str = "none"):
        check_auth(mode)
        self.studio = studio
        self.mode = mode
        self.accounts = Accounts(studio.database) if mode != "none" else None
        self.sessions = Sessions(studio.database) if mode != "none" else None

    def studio_for(self, request: Any) -> Studio:
        if self.accounts is None:
            return self.studio
        user_id = self.user_id(request)
        if user_id is None:
            raise gr.Error(SIGN_IN_FIRST)
        return self.studio.as_user(user_id)

    def user_id(self, request: Any) -> str | None:
        """The signed-in user's id, or None. A Hugging Face user signing in for the first time gets their row."""
        if self.accounts is None:
            return self.studio.owner_id
        token = _header(request, TOKEN_HEADER)
        if token:
            found = self.accounts.database.use_api_token(hash_token(token))
            return found["user_id"] if found else None
        if self.mode == "password":
            return self.sessions.user_id(session_cookie(request))
        info = oauth_info(request)
        username = _username(info)
        if not username or self.sessions.hugging_face_ended(info):
            return None
        user_id = self.accounts.user_for_hugging_face(username)["id"]
        self.sessions.note_hugging_face(info, user_id)
        return user_id

    def signed_in(self, request: Any) -> bool:
        """Whether `request` comes from a signed-in seller; reads only (the sign-in guard asks it on the event
        loop, before Gradio handles an upload)."""
        if self.accounts is None:
            return True
        token = _header(request, TOKEN_HEADER)
        if token:
            return self.accounts.database.live_api_token(hash_token(token)) is not None
        if self.mode == "password":
            return self.sessions.user_id(session_cookie(request)) is not None
        info = oauth_info(request)
        return bool(_username(info)) and not self.sessions.hugging_face_ended(info)

    def sign_in(self, email: str, secret: str, client: str) -> tuple[SignIn, str | None]:
        """Checks the credentials (slow: scrypt) and opens a session; returns the outcome and the session's secret."""
        outcome = self.accounts.sign_in(email, secret, client)
        if outcome.user is None:
            return outcome, None
        return outcome, self.sessions.open(outcome.user["id"], outcome.api_token_id)

    def sign_out(self, request: Any, everywhere: bool = True) -> None:
        """Ends the caller's session (every session of theirs when `everywhere`), as the sign-out link does."""
        if self.sessions is None:
            return
        info = oauth_info(request)
        if info:
            self.sessions.end_hugging_face(info)
        secret = session_cookie(request)
        user_id = self.sessions.user_id(secret)
        if everywhere and user_id:
            self.sessions.end_user(user_id)
        self.sessions.end(secret)

    def account_deleted(self, user_id: str) -> None:
        if self.sessions is not None:
            self.sessions.end_user(user_id)

    def token_revoked(self, token_id: str) -> None:
        if self.sessions is not None:
            self.sessions.end_api_token(token_id)


def session_cookie(request: Any) -> str | None:
    """The value of Gradio's session cookie on `request` (its name carries the app's cookie id)."""
    cookies = getattr(request, "cookies", None) or {}
    for name in list(cookies.keys()):
        if name.startswith(SESSION_COOKIE_PREFIX):
            value = cookies.get(name)
            if value:
                return str(value)
    return None


def oauth_info(request: Any) -> Any:
    """The Hugging Face OAuth session Gradio keeps for `gr.LoginButton`, if any and not expired."""
    try:
        info = request.session.get("oauth_info") if request is not None else None
    except (AttributeError, AssertionError):  # no session middleware: nobody can be signed in
        return None
    if not info or (info.get("expires_at") or float("inf")) < time.time():
        return None
    return info


def hugging_face_username(request: Any) -> str | None:
    """The Hugging Face user signed in through `gr.LoginButton`, if any."""
    return _username(oauth_info(request))


def _username(info: Any) -> str | None:
    return (info.get("userinfo") or {}).get("preferred_username") if info else None


def _header(request: Any, name: str) -> str:
    headers = getattr(request, "headers", None) or {}
    return headers.get(name, "") or ""


def client_address(request: Any) -> str:
    """The caller's address, for limiting sign-in attempts per client. On a Space the app sits behind Hugging
    Face's proxy, which appends the real address to X-Forwarded-For (earlier entries are the client's own words)."""
    forwarded = _header(request, "x-forwarded-for")
    if on_a_space() and forwarded:
        return forwarded.split(",")[-1].strip()
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "")
