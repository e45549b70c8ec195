"""Two sellers on one studio with accounts, through the launched app and gradio_client: each sees only their own,
and an attacker's tricks (other users' ids, file paths, no token, a wrong or revoked token) find nothing."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client, handle_file

from app import Access, create_demo, launch_options
from pipeline.accounts import Accounts

ANA, BO = ("ana@example.com", "ana's long password"), ("bo@example.com", "bo's long password")


@pytest.fixture
def server(studio):
    accounts = Accounts(studio.database)
    for email, password in (ANA, BO):
        accounts.sign_up(email, password)
    access = Access(studio, "password")
    demo = create_demo(studio, access)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(studio, access))
    try:
        yield url, accounts
    finally:
        demo.close()


def client(url: str, auth) -> Client:
    return Client(url, auth=auth, verbose=False)


def test_each_seller_sees_only_their_own(server, photo_path, studio):
    url, accounts = server
    ana, bo = client(url, ANA), client(url, BO)
    garment = ana.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    job = ana.predict(garment["id"], "ghost_01", ["1:1"], [], "white", "jpeg", True, api_name="/generate")
    output = job["outputs"][0]

    assert [g["id"] for g in ana.predict(api_name="/list_garments")] == [garment["id"]]
    assert bo.predict(api_name="/list_garments") == [] and bo.predict(api_name="/list_generations") == []
    refusals = [
        ("/segment_garment", (garment["id"],)), ("/refine_garment", (garment["id"], [[10, 10, 1]])),
        ("/update_garment", (garment["id"], "dress")), ("/generate", (garment["id"],)),
        ("/generation", (job["id"],)), ("/rerun_generation", (job["id"],)), ("/cancel_generation", (job["id"],)),
        ("/set_favorite", (output["id"], True)), ("/download", (output["id"],)), ("/export_garment", (garment["id"],)),
        ("/delete_garment", (garment["id"],)),
    ]
    for endpoint, arguments in refusals:
        with pytest.raises(Exception, match="No garment|No generation|No output"):
            bo.predict(*arguments, api_name=endpoint)
    # nothing of Ana's changed
    again = ana.predict(job["id"], api_name="/generation")
    assert again["outputs"][0]["is_favorite"] == 0 and again["outputs"][0]["download_count"] == 0
    assert ana.predict(garment["id"], api_name="/segment_garment")["category"] == garment["category"]


def test_files_are_not_served_by_path(server, photo_path, studio):
    url, _ = server
    ana = client(url, ANA)
    garment = ana.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    stored = studio.file_path(garment["original_image_url"])
    with httpx.Client(base_url=url) as browser:
        browser.post("login", data={"username": BO[0], "password": BO[1]})
        for trick in (f"gradio_api/file={stored}", f"gradio_api/file={stored.parent}/../../studio.db",
                      "gradio_api/file=../../data/studio.db"):
            response = browser.get(trick)
            assert response.status_code in (403, 404), (trick, response.status_code)


def test_no_token_a_wrong_token_and_a_revoked_token_are_refused(server):
    url, accounts = server
    with pytest.raises(Exception):
        client(url, None).predict(api_name="/list_garments")
    with pytest.raises(Exception):
        client(url, (ANA[0], "not the password"))
    ana_id = accounts.database.find_user_by_email(ANA[0])["id"]
    token = accounts.create_token(ana_id, "script")
    assert client(url, (ANA[0], token["token"])).predict(api_name="/list_garments") == []
    with pytest.raises(Exception):
        client(url, (BO[0], token["token"]))  # Ana's token is not Bo's
    accounts.revoke_token(ana_id, token["id"])
    with pytest.raises(Exception):
        client(url, (ANA[0], token["token"]))
    # the same through the API, as a program would
    ana = client(url, ANA)
    made = ana.predict("deploy script", api_name="/create_api_token")
    assert client(url, (ANA[0], made["token"])).predict(api_name="/list_garments") == []
    with pytest.raises(Exception, match="No live API token"):
        client(url, BO).predict(made["id"], api_name="/revoke_api_token")
    ana.predict(made["id"], api_name="/revoke_api_token")
    assert [t["revoked_at"] is not None for t in ana.predict(api_name="/list_api_tokens")] == [True, True]


class FakeRequest:
    """What Gradio hands a handler: headers, and the OAuth session that gr.LoginButton fills."""

    def __init__(self, session: dict | None = None, headers: dict | None = None, username: str | None = None):
        self.session = session or {}
        self.headers = headers or {}
        self.username = username


def test_hugging_face_sign_in_maps_to_a_user_row_and_anonymous_is_refused(studio, as_if_on_a_space):
    import time

    import gradio as gr

    access = Access(studio, "huggingface")
    signed_in = FakeRequest({"oauth_info": {"userinfo": {"preferred_username": "SellerSam"},
                                            "expires_at": time.time() + 60}})
    sam = access.studio_for(signed_in)
    assert studio.database.get_user(sam.owner_id)["email"] == "sellersam@users.huggingface.co"
    assert access.studio_for(signed_in).owner_id == sam.owner_id  # the same row every time
    expired = FakeRequest({"oauth_info": {"userinfo": {"preferred_username": "SellerSam"}, "expires_at": 1}})
    for anonymous in (FakeRequest(), expired, FakeRequest(username="sellersam@users.huggingface.co"), None):
        with pytest.raises(gr.Error, match="Sign in"):
            access.studio_for(anonymous)


def test_programs_use_an_api_token_header_on_a_hugging_face_studio(studio, photo_path, as_if_on_a_space):
    access = Access(studio, "huggingface")
    user = access.accounts.user_for_hugging_face("sellersam")
    token = access.accounts.create_token(user["id"], "script")
    demo = create_demo(studio, access)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(studio, access))
    try:
        with pytest.raises(Exception, match="Sign in"):
            Client(url, verbose=False).predict(api_name="/list_garments")
        with pytest.raises(Exception, match="Sign in"):
            Client(url, verbose=False, headers={"x-studio-token": "rs_wrong"}).predict(api_name="/list_garments")
        program = Client(url, verbose=False, headers={"x-studio-token": token["token"]})
        garment = program.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        assert [g["id"] for g in program.predict(api_name="/list_garments")] == [garment["id"]]
        assert studio.as_user(user["id"]).get_garment(garment["id"])["id"] == garment["id"]
    finally:
        demo.close()
