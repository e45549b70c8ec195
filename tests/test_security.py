"""What an attacker tried against a launched studio, and what each attempt gets now (issue 10): the Space entry
point, sign-in modes, sessions that outlive their credential, sign-in floods, deleted data still served, and
uploads outside any limit. Quota races are in test_quota_integrity.py; refine and error-path limits in
test_refine_limits_and_error_paths.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from itsdangerous import TimestampSigner
from PIL import Image

from app import Access, build, create_demo, launch_options
from pipeline import accounts as accounts_module
from pipeline import settings as settings_module
from pipeline.accounts import Accounts, AttemptLimiter
from pipeline.errors import SettingsError
from pipeline.settings import Settings
from web import served_files, sign_in
from web.served_files import ServedFiles

REPO = Path(__file__).resolve().parent.parent
REFUSED = "401|Sign in"  # Gradio's own refusal (the session was removed from its table), or the studio's
ANA, BO = ("ana@example.com", "ana's long password"), ("bo@example.com", "bo's long password")


def launched(studio, access):
    demo = create_demo(studio, access)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(studio, access))
    return demo, url


@pytest.fixture
def server(studio):
    """A studio with accounts for Ana and Bo, served as `resell-studio serve --accounts` serves it."""
    access = Access(studio, "password")
    for email, password in (ANA, BO):
        access.accounts.sign_up(email, password)
    demo, url = launched(studio, access)
    try:
        yield url, access
    finally:
        demo.close()


def client(url: str, auth=None, **options) -> Client:
    return Client(url, auth=auth, verbose=False, **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "SPACE_", "OAUTH_", "GRADIO_"))}
    env.pop("SYSTEM", None)
    return {**env, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **values}


# -- 1. every entry point reads the same sign-in settings; a Space never runs open by default ----------------


def wait_until_served(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited: {process.communicate()[1][-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise AssertionError("the app did not start")


def test_python_app_py_reads_the_sign_in_mode_like_the_cli(tmp_path):
    """`python app.py` is how a Space (and `gradio app.py`) starts the studio: it must not serve anonymously when
    STUDIO_AUTH says password."""
    port = free_port()
    env = clean_env(STUDIO_AUTH="password", STUDIO_DATA_DIR=str(tmp_path / "data"), GRADIO_SERVER_PORT=str(port))
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, process)
        anonymous = httpx.post(f"{url}gradio_api/run/list_garments", json={"data": [50, 0]}, timeout=10)
        assert anonymous.status_code == 401, anonymous.text
        assert httpx.get(f"{url}config", timeout=10).status_code == 401
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_a_space_without_sign_in_refuses_to_start_unless_its_owner_says_so(tmp_path, monkeypatch):
    """On a Space the default is Sign in with Hugging Face; with no `hf_oauth` it refuses to start and says what to
    set. STUDIO_AUTH=none, said explicitly, is the owner's choice."""
    env = clean_env(SYSTEM="spaces", SPACE_ID="seller/studio", STUDIO_DATA_DIR=str(tmp_path / "data"),
                    GRADIO_SERVER_PORT=str(free_port()))
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "hf_oauth: true" in result.stderr and "STUDIO_AUTH=none" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "data").exists()  # refused before opening anything

    for name in ("SPACE_ID", "STUDIO_AUTH", "STUDIO_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    assert settings_module.resolve_auth() == "none"  # off a Space nothing changes for `make run`
    monkeypatch.setenv("SPACE_ID", "seller/studio")
    assert settings_module.resolve_auth() == "huggingface"
    monkeypatch.setenv("STUDIO_AUTH", "none")
    assert settings_module.resolve_auth() == "none"


def test_the_module_level_demo_launches_with_the_studios_sign_in(tmp_path, monkeypatch):
    """`app.demo` (what Spaces and `gradio app.py` import) is built by the same `build(settings)` as the CLI and
    applies its sign-in and limits whoever calls `launch()` and with what."""
    monkeypatch.setenv("STUDIO_AUTH", "password")
    studio, demo = build(Settings.from_env(tmp_path / "data"))
    try:
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
        anonymous = httpx.post(f"{url}gradio_api/run/list_garments", json={"data": [50, 0]}, timeout=10)
        assert anonymous.status_code == 401
    finally:
        demo.close()
        studio.close()


# -- 2. Hugging Face sign-in off a Space would make every visitor the machine's owner -----------------------


def test_hugging_face_sign_in_is_refused_off_a_space(studio, tmp_path):
    with pytest.raises(SettingsError, match="only on a Hugging Face Space"):
        Access(studio, "huggingface")
    env = clean_env(HF_TOKEN="hf_owner_of_this_machine")
    result = subprocess.run([sys.executable, "-m", "cli", "serve", "--auth", "huggingface", "--data-dir",
                             str(tmp_path / "cli-data"), "--port", str(free_port())],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "only on a Hugging Face Space" in result.stderr and "--auth password" in result.stderr


# -- 3. a session ends with the credential that opened it -----------------------------------------------------


def test_a_session_opened_with_an_api_token_ends_when_the_token_is_revoked(server):
    url, access = server
    ana = client(url, ANA)
    token = ana.predict("phone script", api_name="/create_api_token")
    script = client(url, (ANA[0], token["token"]))
    assert script.predict(api_name="/list_garments") == []
    ana.predict(token["id"], api_name="/revoke_api_token")
    with pytest.raises(Exception, match=REFUSED):
        script.predict(api_name="/list_garments")
    with pytest.raises(Exception, match=REFUSED):
        script.predict("a new one", api_name="/create_api_token")  # nor can it mint its way back in
    assert [t["name"] for t in ana.predict(api_name="/list_api_tokens")] == ["phone script"]


def test_a_deleted_accounts_session_does_not_act_for_a_new_account_of_the_same_email(server, photo_path):
    url, access = server
    old = client(url, ANA)
    old.predict("DELETE", api_name="/delete_account")
    access.accounts.sign_up(ANA[0], "a brand new password")  # the same email, a new person or a new start
    new = client(url, (ANA[0], "a brand new password"))
    garment = new.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    with pytest.raises(Exception, match=REFUSED):
        old.predict(api_name="/list_garments")
    with pytest.raises(Exception, match=REFUSED):
        old.predict(garment["id"], api_name="/delete_garment")
    assert [g["id"] for g in new.predict(api_name="/list_garments")] == [garment["id"]]


def test_the_answer_to_delete_my_account_reaches_the_caller_whose_session_it_ended(server):
    """A program's client opens the results stream just after it sends the call, while its heartbeat, on another
    connection, may already carry the ended session's cookie: the answer must still arrive, and nothing else may."""
    url, access = server
    with httpx.Client(base_url=url, timeout=30) as program:
        assert program.post("login", data={"username": ANA[0], "password": ANA[1]}).status_code == 200
        secret = next(value for name, value in program.cookies.items() if name.startswith("access-token-"))
        config = program.get("config").json()
        delete = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "delete_account")
        joined = program.post("gradio_api/queue/join", json={
            "data": ["DELETE"], "fn_index": delete, "session_hash": "ana-program", "event_data": None,
            "trigger_id": None})
        assert joined.status_code == 200
        deadline = time.monotonic() + 30
        while access.sessions.user_id(secret) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        # the heartbeat, or any other call, lands first
        assert program.post("gradio_api/run/list_garments", json={"data": [50, 0]}).status_code == 401
        assert program.get("config").status_code == 401
        messages = []
        with program.stream("GET", "gradio_api/queue/data", params={"session_hash": "ana-program"}) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    messages.append(json.loads(line[5:]))
                    if messages[-1]["msg"] == "process_completed":
                        break
    completed = messages[-1]
    assert completed["success"] and completed["output"]["data"][0]["deleted"]
    assert access.accounts.database.find_user_by_email(ANA[0]) is None


def test_an_ended_session_leaves_gradios_table_after_the_results_grace(server, monkeypatch):
    url, access = server
    monkeypatch.setattr(sign_in, "RESULTS_GRACE_S", 0.0)
    with httpx.Client(base_url=url, timeout=30) as browser:
        assert browser.post("login", data={"username": ANA[0], "password": ANA[1]}).status_code == 200
        access.account_deleted(access.accounts.database.find_user_by_email(ANA[0])["id"])
        assert browser.get("config").status_code == 401  # seen ended
        time.sleep(0.01)
        assert browser.get("config").status_code == 401  # grace over: gone from Gradio's table
        stream = browser.get("gradio_api/queue/data", params={"session_hash": "any"})
        assert stream.status_code == 401


def test_signing_out_ends_the_session_on_the_server(server):
    url, access = server
    with httpx.Client(base_url=url) as browser:
        assert browser.post("login", data={"username": ANA[0], "password": ANA[1]}).status_code == 200
        copied = dict(browser.cookies)
        assert browser.post("gradio_api/run/list_garments", json={"data": [50, 0]}).status_code == 200
        browser.get("logout")
    with httpx.Client(base_url=url, cookies=copied) as replay:  # someone kept a copy of the cookie
        assert replay.post("gradio_api/run/list_garments", json={"data": [50, 0]}).status_code == 401
    assert access.sessions.count() == 0


SESSION_SECRET = hashlib.sha256(b"secret-v4").hexdigest()  # Gradio's, from OAUTH_CLIENT_SECRET "secret"


def oauth_cookie(username: str, access_token: str) -> str:
    """The session cookie Gradio's OAuth callback sets after Hugging Face signs `username` in (the Hub cannot be
    reached from here, so the callback's result is signed as Gradio signs it)."""
    session = {"oauth_info": {"access_token": access_token, "expires_at": time.time() + 3600,
                              "userinfo": {"preferred_username": username}}}
    payload = base64.b64encode(json.dumps(session).encode())
    return "session=" + TimestampSigner(SESSION_SECRET).sign(payload).decode()


@pytest.fixture
def hugging_face_server(studio, as_if_on_a_space):
    access = Access(studio, "huggingface")
    demo, url = launched(studio, access)
    try:
        yield url, access
    finally:
        demo.close()


def test_hugging_face_sign_out_and_account_deletion_end_the_session(hugging_face_server, photo_path):
    url, access = hugging_face_server
    cookie = oauth_cookie("SellerSam", "hf_oauth_1")
    sam = client(url, headers={"cookie": cookie})
    assert sam.predict(api_name="/list_garments") == []
    httpx.get(f"{url}logout", headers={"cookie": cookie}, follow_redirects=False)
    with pytest.raises(Exception, match=REFUSED):
        sam.predict(api_name="/list_garments")  # a kept copy of the signed-out cookie

    cookie = oauth_cookie("SellerSam", "hf_oauth_2")  # signs in again
    sam = client(url, headers={"cookie": cookie})
    sam.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    sam.predict("DELETE", api_name="/delete_account")
    with pytest.raises(Exception, match=REFUSED):
        sam.predict(api_name="/list_garments")  # the deleted account's session does not open a new account
    assert access.accounts.database.find_user_by_email("sellersam@users.huggingface.co") is None


# -- 6. sign-in floods --------------------------------------------------------------------------------------


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Each password check, and whether it ran on an event loop (the real check still runs)."""
    calls: list[bool] = []
    real = accounts_module.verify_password

    def spy(password, stored):
        try:
            asyncio.get_running_loop()
            calls.append(True)
        except RuntimeError:
            calls.append(False)
        return real(password, stored)

    monkeypatch.setattr(accounts_module, "verify_password", spy)
    return calls


def test_password_checks_run_off_the_event_loop(server, scrypt_calls):
    url, _ = server
    assert httpx.post(f"{url}login", data={"username": ANA[0], "password": "wrong guess"}).status_code == 400
    assert httpx.post(f"{url}login", data={"username": ANA[0], "password": ANA[1]}).status_code == 200
    assert scrypt_calls == [False, False]


def test_one_client_trying_many_emails_is_stopped(server, scrypt_calls):
    url, _ = server
    for number in range(accounts_module.FAILED_SIGN_INS_PER_CLIENT):
        answer = httpx.post(f"{url}login", data={"username": f"victim{number}@example.com", "password": "guess"})
        assert answer.status_code == 400
    checks = len(scrypt_calls)
    answer = httpx.post(f"{url}login", data={"username": BO[0], "password": BO[1]})
    assert answer.status_code == 429 and "from your connection" in answer.json()["detail"]
    assert len(scrypt_calls) == checks  # refused before any scrypt


def test_concurrent_wrong_passwords_cannot_pass_the_lockout(studio, scrypt_calls):
    accounts = Accounts(studio.database)
    accounts.sign_up(*ANA)
    start = threading.Barrier(30)

    def guess(number: int) -> None:
        start.wait()
        accounts.authenticate(ANA[0], f"guess {number}")

    threads = [threading.Thread(target=guess, args=(number,)) for number in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(scrypt_calls) == accounts_module.FAILED_SIGN_INS_ALLOWED
    assert accounts.authenticate(ANA[0], ANA[1]) is None  # locked: five guesses were made, even at once


def test_a_locked_out_email_keeps_its_valid_api_token(server):
    url, access = server
    ana_id = access.accounts.database.find_user_by_email(ANA[0])["id"]
    token = access.accounts.create_token(ana_id, "listing script")
    for number in range(accounts_module.FAILED_SIGN_INS_ALLOWED):
        httpx.post(f"{url}login", data={"username": ANA[0], "password": f"attacker guess {number}"})
    assert httpx.post(f"{url}login", data={"username": ANA[0], "password": ANA[1]}).status_code == 429
    assert client(url, (ANA[0], token["token"])).predict(api_name="/list_garments") == []


def test_the_failed_sign_in_table_stays_small_whatever_is_sent():
    limiter = AttemptLimiter(allowed=5, window_s=900, max_keys=1000)
    tracemalloc.start()
    for number in range(5000):
        key = f"{number}-" + "x" * 10_000 + "@example.com"  # long and many
        assert limiter.begin(key)
        limiter.end(key, failed=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(limiter) <= 1000
    assert peak < 2_000_000  # bytes: digests, not the keys themselves
    limiter = AttemptLimiter(allowed=5, window_s=900, max_keys=1000)
    for _ in range(5):
        limiter.begin("ana@example.com"), limiter.end("ana@example.com", failed=True)
    for number in range(999):  # others come and go; a locked key is the last to be forgotten
        limiter.begin(f"other{number}@example.com"), limiter.end(f"other{number}@example.com", failed=False)
    assert not limiter.begin("ana@example.com")


# -- 7. nothing of a deleted garment or account stays served ---------------------------------------------------


def gradio_copies(*contents: bytes) -> list[Path]:
    """Files under Gradio's cache (uploads and served copies) holding any of `contents`."""
    wanted = set(contents)
    root = Path(get_upload_folder())
    return [path for path in root.rglob("*") if path.is_file() and path.stat().st_size in {len(c) for c in wanted}
            and path.read_bytes() in wanted]


def test_deleting_a_garment_or_an_account_leaves_nothing_served(server, tmp_path):
    url, access = server
    from conftest import garment_photo

    image, _ = garment_photo(seed=11)  # bytes no other test uploads
    photo = tmp_path / "unique tee.jpg"
    image.save(photo, quality=90)
    for delete in ("garment", "account"):
        seller = client(url, ANA if delete == "garment" else BO, download_files=False)
        garment = seller.predict(handle_file(str(photo)), api_name="/upload_garment")
        job = seller.predict(garment["id"], "ghost_01", ["1:1"], [], "white", "jpeg", True, api_name="/generate")
        download = seller.predict(job["outputs"][0]["id"], api_name="/download")
        export = seller.predict(garment["id"], api_name="/export_garment")
        output_bytes = access.studio.file_path(job["outputs"][0]["image_url"]).read_bytes()
        with httpx.Client(base_url=url, cookies=seller.cookies) as browser:
            zip_bytes = browser.get(export["url"]).content
            assert browser.get(download["url"]).status_code == 200
        assert gradio_copies(photo.read_bytes(), output_bytes, zip_bytes)  # uploaded and served: Gradio holds them
        if delete == "garment":
            seller.predict(garment["id"], api_name="/delete_garment")
        else:
            seller.predict("DELETE", api_name="/delete_account")
            seller = client(url, ANA, download_files=False)  # the URLs, fetched by any signed-in seller
        with httpx.Client(base_url=url, cookies=seller.cookies) as browser:
            for handed_out in (download["url"], export["url"]):
                assert browser.get(handed_out).status_code in (403, 404), handed_out
        assert gradio_copies(photo.read_bytes(), output_bytes, zip_bytes) == []
        assert not list((access.studio.settings.data_dir / "served").glob(f"*/{garment['id']}"))


def test_previews_and_exports_are_removed_with_their_garment_and_in_time(tmp_path, monkeypatch):
    """The UI's previews (the photo and the cut-out it shows) and export zips: Gradio's copies go with the garment,
    and the studio's own files go once Gradio has copied them."""
    served = ServedFiles(tmp_path / "served", gradio_cache=tmp_path / "gradio")
    preview = served.preview("owner", "garment", Image.new("RGB", (64, 64), (10, 200, 30)), "cut-out")
    copy = Path(save_file_to_cache(preview, str(tmp_path / "gradio")))  # what Gradio does with a returned path
    folder = served.export_folder("owner", "garment")
    old_zip = folder / "tee-photos.zip"
    old_zip.write_bytes(b"PK old export")
    served.served("owner", "garment", old_zip)
    zip_copy = Path(save_file_to_cache(old_zip, str(tmp_path / "gradio")))
    an_hour_later = time.time() + 3600
    monkeypatch.setattr(served_files.time, "time", lambda: an_hour_later)
    served.export_folder("owner", "garment")
    assert not old_zip.exists()  # removed once old, but its digest is remembered
    served.forget_garment("owner", "garment")
    assert not copy.exists() and not zip_copy.exists() and not (tmp_path / "served" / "owner" / "garment").exists()


# -- 8. uploads are photo-sized and need a signed-in seller ------------------------------------------------------


def test_uploads_larger_than_a_photo_are_refused(server):
    url, _ = server
    from pipeline.ingest import MAX_UPLOAD_BYTES

    with httpx.Client(base_url=url) as browser:
        browser.post("login", data={"username": ANA[0], "password": ANA[1]})
        small = browser.post("gradio_api/upload", files={"files": ("tee.jpg", b"\xff\xd8" + b"0" * 1000)})
        assert small.status_code == 200
        big = browser.post("gradio_api/upload", files={"files": ("big.jpg", b"0" * (MAX_UPLOAD_BYTES + 1))})
        assert big.status_code == 413


def test_anonymous_uploads_are_refused_on_a_hugging_face_studio(hugging_face_server):
    url, _ = hugging_face_server
    anonymous = httpx.post(f"{url}gradio_api/upload", files={"files": ("parked.bin", b"0" * 100_000)})
    assert anonymous.status_code == 401
    signed_in = httpx.post(f"{url}gradio_api/upload", files={"files": ("tee.jpg", b"0" * 1000)},
                           headers={"cookie": oauth_cookie("SellerSam", "hf_oauth_3")})
    assert signed_in.status_code == 200
