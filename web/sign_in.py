"""The sign-in guard: an ASGI middleware in front of Gradio's routes, for studios with accounts.

It takes over three things Gradio does in a way a shared studio cannot keep:
- `POST /login`: Gradio checks the password inside its async route, so every scrypt check stalls the whole server,
  and it records the session by email only. Here the check runs in a worker thread (at most `SIGN_IN_THREADS` at
  once), is limited per email and per client (`pipeline.accounts`), and the session it opens is bound to the account
  and the credential used (`web.sessions`).
- `GET /logout`: ends the session for good on the server, not only in the browser.
- every other request: a session whose credential is gone (revoked token, deleted account) reaches Gradio without
  its cookie, so Gradio's routes treat it as signed out; it leaves Gradio's own table once nothing it sent can still
  be waiting for its answer. Uploads need a signed-in seller.
"""

from __future__ import annotations

import logging
import time

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from web.access import SESSION_COOKIE_PREFIX, SIGN_IN_FIRST, Access, client_address, oauth_info, session_cookie

log = logging.getLogger(__name__)

SIGN_IN_THREADS = 2  # scrypt calls at once: a flood of sign-ins can take at most this many cores
MAX_SIGN_IN_BODY = 16 * 1024
LOGIN_PATHS = ("/login", "/login/")
LOGOUT_PATHS = ("/logout", "/logout/")
UPLOAD_PATHS = ("/gradio_api/upload", "/gradio_api/upload/")
# The stream that carries the results of events a session sent while it was live: the answer to "delete my
# account" or "revoke this token" still reaches the caller whose session that call ended.
RESULTS_STREAM = "/gradio_api/queue/data"
# How long an ended session may still open that stream. A program's client opens it just after it sends the call,
# while its heartbeat, on another connection, may already carry the ended session's cookie.
RESULTS_GRACE_S = 60.0


class SignInGuard:
    def __init__(self, app: ASGIApp, access: Access):
        self.app = app
        self.access = access
        self.limiter = anyio.CapacityLimiter(SIGN_IN_THREADS)
        self._ended: dict[str, float] = {}  # secret of an ended session still in Gradio's table -> when seen ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.access.sessions is None:
            return await self.app(scope, receive, send)
        path, method = _route_path(scope), scope["method"]
        request = Request(scope)
        if path in LOGIN_PATHS and method == "POST" and self.access.mode == "password":
            return await self._sign_in(Request(scope, receive), scope, receive, send)
        self._forget_ended_session(request, scope, results_only=path == RESULTS_STREAM)
        if path in LOGOUT_PATHS:
            self.access.sign_out(request, everywhere=request.query_params.get("all_session", "true") != "false")
        if path in UPLOAD_PATHS and not self.access.signed_in(request):
            return await PlainTextResponse(SIGN_IN_FIRST, status_code=401)(scope, receive, send)
        await self.app(scope, receive, send)

    async def _sign_in(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        if int(request.headers.get("content-length") or 0) > MAX_SIGN_IN_BODY:
            return await _error(413, "A sign-in is an email and a password.", scope, receive, send)
        try:
            form = await request.form(max_files=0, max_fields=10)
        except Exception:  # noqa: BLE001 - any malformed body is a bad request, not a crash
            log.info("a sign-in with a malformed body was refused", exc_info=True)
            return await _error(400, "Send the email and password as a form.", scope, receive, send)
        email, secret = str(form.get("username") or ""), str(form.get("password") or "")
        outcome, session = await anyio.to_thread.run_sync(
            self.access.sign_in, email, secret, client_address(request), limiter=self.limiter)
        if session is None:
            return await _error(429 if outcome.locked_out else 400, outcome.refusal, scope, receive, send)
        gradio = scope["app"]
        gradio.tokens[session] = outcome.user["email"]  # Gradio's own routes check this table
        response = JSONResponse({"success": True})
        response.set_cookie(f"{SESSION_COOKIE_PREFIX}{gradio.cookie_id}", session, httponly=True, samesite="none",
                            secure=True)
        response.set_cookie(f"{SESSION_COOKIE_PREFIX}unsecure-{gradio.cookie_id}", session, httponly=True)
        await response(scope, receive, send)

    def _forget_ended_session(self, request: Request, scope: Scope, results_only: bool) -> None:
        """Takes the cookie of a session whose credential is gone off the request (so Gradio's routes refuse it
        too), except on the results stream for a short while, and a Hugging Face session that was signed out or
        whose account was deleted off the request's session."""
        if self.access.mode == "password":
            tokens = getattr(scope.get("app"), "tokens", {})
            self._drop_expired_sessions(tokens)
            secret = session_cookie(request)
            if secret and secret in tokens and self.access.sessions.user_id(secret) is None:
                self._ended.setdefault(secret, time.monotonic())
                if not results_only:
                    _drop_session_cookies(scope)
        elif "session" in scope and not results_only:
            info = oauth_info(request)
            if info and self.access.sessions.hugging_face_ended(info):
                scope["session"].pop("oauth_info", None)

    def _drop_expired_sessions(self, tokens: dict) -> None:
        """Removes ended sessions from Gradio's table once their results-stream grace is over."""
        now = time.monotonic()
        for secret in [s for s, ended in self._ended.items() if now - ended > RESULTS_GRACE_S]:
            tokens.pop(secret, None)
            del self._ended[secret]


def _drop_session_cookies(scope: Scope) -> None:
    """Removes Gradio's session cookies (`access-token-*`) from the request, keeping every other cookie."""
    headers = []
    for name, value in scope["headers"]:
        if name == b"cookie":
            kept = [c for c in value.split(b";") if not c.strip().startswith(SESSION_COOKIE_PREFIX.encode())]
            if not kept:
                continue
            value = b";".join(kept)
        headers.append((name, value))
    scope["headers"] = headers


def _route_path(scope: Scope) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _error(status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)


def refuse_outside_the_guard(username: str, password: str) -> bool:
    """Gradio's own `auth=` check. Gradio needs one to show its sign-in page and to guard its routes, but every
    sign-in goes through the SignInGuard, so this one admits nobody: a session it opened would not be bound to a
    credential."""
    log.warning("a sign-in reached Gradio's own /login route, past the sign-in guard; refused")
    return False

