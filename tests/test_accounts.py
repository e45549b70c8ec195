"""Accounts: password storage and checks, API tokens, Hugging Face users, the failed sign-in limit."""

from __future__ import annotations

import pytest

from pipeline import accounts as accounts_module
from pipeline.accounts import Accounts, hash_password, verify_password
from pipeline.errors import InputError, NotFoundError
from storage import StudioDatabase


@pytest.fixture
def accounts(tmp_path):
    database = StudioDatabase(tmp_path / "studio.db")
    yield Accounts(database)
    database.close()


def test_passwords_are_stored_as_scrypt_hashes_only(accounts):
    user = accounts.sign_up("Ana@Example.com", "correct horse battery")
    stored = accounts.database.find_user_by_email("ana@example.com")
    assert user["email"] == "ana@example.com" and "password_hash" not in user
    assert stored["password_hash"].startswith("scrypt$") and "correct horse" not in stored["password_hash"]
    assert verify_password("correct horse battery", stored["password_hash"])
    assert not verify_password("correct horse batterY", stored["password_hash"])
    assert hash_password("same") != hash_password("same")  # salted


def test_sign_up_refusals(accounts):
    accounts.sign_up("ana@example.com", "correct horse battery")
    for email, password, message in [("ana@example.com", "another long one", "exists already"),
                                     ("not-an-email", "long enough pass", "not an email"),
                                     ("bo@example.com", "short", "at least 10")]:
        with pytest.raises(InputError, match=message):
            accounts.sign_up(email, password)


def test_sign_in_with_a_password_or_a_token(accounts):
    ana = accounts.sign_up("ana@example.com", "correct horse battery")
    bo = accounts.sign_up("bo@example.com", "another good secret")
    assert accounts.authenticate("ANA@example.com ", "correct horse battery")["id"] == ana["id"]
    assert accounts.authenticate("ana@example.com", "wrong") is None
    assert accounts.authenticate("nobody@example.com", "correct horse battery") is None

    token = accounts.create_token(ana["id"], "my script")
    assert token["token"].startswith("rs_") and "token_hash" not in token
    assert accounts.authenticate("ana@example.com", token["token"])["id"] == ana["id"]
    assert accounts.authenticate("bo@example.com", token["token"]) is None  # a token works for its owner only
    listed = accounts.list_tokens(ana["id"])
    assert [t["name"] for t in listed] == ["my script"] and "token" not in listed[0] and listed[0]["last_used_at"]
    with pytest.raises(NotFoundError):
        accounts.revoke_token(bo["id"], token["id"])  # nobody revokes another user's token
    accounts.revoke_token(ana["id"], token["id"])
    assert accounts.authenticate("ana@example.com", token["token"]) is None


def test_odd_token_names_and_ids_are_handled(accounts):
    ana = accounts.sign_up("ana@example.com", "correct horse battery")
    assert accounts.create_token(ana["id"], 12345)["name"] == "12345"
    assert accounts.create_token(ana["id"], None)["name"] == "API token"
    assert accounts.create_token(ana["id"], "bad \ud800 name")["name"] == "bad ? name"
    for token_id in ("\ud800", 42, None):
        with pytest.raises(NotFoundError, match="No live API token"):
            accounts.revoke_token(ana["id"], token_id)


def test_too_many_failed_sign_ins_lock_the_email(accounts, monkeypatch):
    accounts.sign_up("ana@example.com", "correct horse battery")
    for _ in range(accounts_module.FAILED_SIGN_INS_ALLOWED):
        assert accounts.authenticate("ana@example.com", "guess") is None
    assert accounts.authenticate("ana@example.com", "correct horse battery") is None  # locked, even when right
    clock = accounts_module.time.monotonic() + accounts_module.FAILED_SIGN_IN_WINDOW_S + 1
    monkeypatch.setattr(accounts_module.time, "monotonic", lambda: clock)
    assert accounts.authenticate("ana@example.com", "correct horse battery") is not None


def test_hugging_face_users_are_created_once(accounts):
    first = accounts.user_for_hugging_face("SellerSam")
    assert first["email"] == "sellersam@users.huggingface.co"
    assert accounts.user_for_hugging_face("sellersam")["id"] == first["id"]
    assert accounts.authenticate(first["email"], "") is None  # no password: no password sign-in
