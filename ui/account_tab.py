"""The Account tab: the plan and what is left of it, API tokens, and deleting the account."""

from __future__ import annotations

import gradio as gr

from pipeline.studio import Studio
from ui.common import PRIVATE, UIContext, when
from web.api import delete_account
from web.errors import explained


def usage_markdown(usage: dict) -> str:
    plan = usage["plan"]
    return (f"**{plan['name'].capitalize()} plan** · photos made today {usage['generations_today']} of "
            f"{plan['generations_per_day']} (resets in {usage['resets_in']}) · jobs running {usage['active_jobs']} "
            f"of {plan['concurrent_jobs']} · storage {usage['storage_mb']} of {plan['storage_mb']} MB")


def build_account_tab(ctx: UIContext, tab: gr.Tab) -> None:
    usage_view = gr.Markdown()
    with gr.Accordion("API tokens (for programs)", open=False):
        gr.Markdown("Programs sign in with your email and a token: `Client(url, auth=(email, token))`. A token is "
                    "shown once; revoke it when done.", elem_classes="quiet")
        with gr.Row():
            token_name = gr.Textbox(label="Token name", placeholder="my listing script", scale=2)
            create = gr.Button("Create token")
        new_token = gr.Textbox(label="New token (copy it now)", interactive=False)
        tokens_table = gr.Dataframe(label="Your tokens", interactive=False)
        with gr.Row():
            revoke_choice = gr.Dropdown(label="Token to revoke", choices=[], scale=2)
            revoke = gr.Button("Revoke")
    with gr.Group(elem_classes="danger"):
        gr.Markdown("**Delete your account.** Every garment, photo and file goes, for good.")
        with gr.Row():
            confirm_box = gr.Textbox(label="Type DELETE to confirm", scale=2)
            delete = gr.Button("Delete my account and everything in it", variant="stop")

    def token_views(studio: Studio):
        if ctx.access.accounts is None:
            return gr.Dataframe(value=None), gr.Dropdown(choices=[])
        tokens = ctx.access.accounts.list_tokens(studio.owner_id)
        rows = [[t["name"], when(t["created_at"]), when(t["last_used_at"] or ""), "revoked" if t["revoked_at"]
                 else "live"] for t in tokens]
        live = [(f"{t['name']} ({when(t['created_at'])})", t["id"]) for t in tokens if not t["revoked_at"]]
        return (gr.Dataframe(value=rows or None, headers=["name", "created", "last used", "state"]),
                gr.Dropdown(choices=live, value=None))

    def on_open(request: gr.Request):
        studio = ctx.studio_for(request)
        return (usage_markdown(studio.usage()), *token_views(studio))

    def on_create(name: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if ctx.access.accounts is None:
            raise gr.Error("This studio runs without accounts: API calls need no token.")
        return (ctx.access.accounts.create_token(studio.owner_id, name)["token"], *token_views(studio))

    def on_revoke(token_id: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if ctx.access.accounts is None or not token_id:
            raise gr.Error("Choose a token to revoke.")
        ctx.access.accounts.revoke_token(studio.owner_id, token_id)
        ctx.access.token_revoked(token_id)
        return token_views(studio)

    def on_delete(confirm: str, request: gr.Request):
        studio = ctx.studio_for(request)
        if confirm != "DELETE":
            raise gr.Error("Type DELETE in the box to confirm.")
        delete_account(ctx.access, studio, ctx.served)
        gr.Info("Your account and everything in it were deleted.")
        usage = ("Your account was deleted and you are signed out." if ctx.access.accounts
                 else usage_markdown(studio.usage()))
        return usage, ""

    ui = explained
    tab.select(ui(on_open), None, [usage_view, tokens_table, revoke_choice], **PRIVATE)
    create.click(ui(on_create), token_name, [new_token, tokens_table, revoke_choice], **PRIVATE)
    revoke.click(ui(on_revoke), revoke_choice, [tokens_table, revoke_choice], **PRIVATE)
    delete.click(ui(on_delete), confirm_box, [usage_view, confirm_box], **PRIVATE)
