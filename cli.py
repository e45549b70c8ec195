"""The `resell-studio` command: serve the app, cut garments out, and generate photos from the shell.

Errors go to stderr as one line a seller can act on, with a non-zero exit; no tracebacks
(set STUDIO_DEBUG=1 to see them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.families import FAMILIES
from pipeline.errors import StudioError
from pipeline.segmentation import SEGMENTATION_BACKENDS
from pipeline.settings import DEFAULT_HOST, DEFAULT_PORT, Settings

EXIT_FAILED = 1


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resell-studio", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the web app and its API")
    serve.add_argument("--host", help=f"address to listen on (env GRADIO_SERVER_NAME, default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, help=f"port (env GRADIO_SERVER_PORT, default {DEFAULT_PORT})")
    serve.add_argument("--data-dir", help="where the database and images live (env STUDIO_DATA_DIR, default ./data)")
    serve.add_argument("--accounts", action="store_true", help="the same as --auth password")
    serve.add_argument("--auth", choices=["none", "password", "huggingface"],
                       help="none: one local seller, no sign-in (the default off a Space); password: sellers sign "
                            "in with email and password (or an API token); huggingface: Sign in with Hugging Face "
                            "(the default on a Space, refused elsewhere). Env STUDIO_AUTH")
    _model_options(serve, backend_flag="--segmentation-backend")

    segment = commands.add_parser("segment", help="cut garments out of photos and write their masks")
    segment.add_argument("images", nargs="+", metavar="IMAGE")
    segment.add_argument("--out", required=True, help="folder for the masks, written as <stem>.png")
    _model_options(segment, backend_flag="--backend")

    users = commands.add_parser("users", help="manage accounts (for a studio served with --accounts)")
    users.add_argument("action", choices=["add", "list", "token"])
    users.add_argument("email", nargs="?")
    users.add_argument("--plan", default="free", choices=["free", "pro", "enterprise"])
    users.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    users.add_argument("--data-dir", help="where the database and images live (env STUDIO_DATA_DIR)")

    generate = commands.add_parser("generate", help="make marketplace photos of a garment (stored in the data dir)")
    generate.add_argument("image", metavar="IMAGE")
    generate.add_argument("--model", default="ghost_01", help="virtual model id (default ghost_01)")
    generate.add_argument("--ratios", type=_comma_list, default=[], help="aspect ratios, e.g. 1:1,4:5,3:4")
    generate.add_argument("--marketplace", action="append", default=[],
                          help="marketplace preset (ebay, poshmark, depop, vinted, ...); repeat or comma-separate")
    generate.add_argument("--background", default="white")
    generate.add_argument("--format", dest="file_format", default="jpeg", choices=["jpeg", "png"])
    generate.add_argument("--out", default="resell-photos", help="folder to copy the photos to")
    generate.add_argument("--data-dir", help="where the database and images live (env STUDIO_DATA_DIR)")
    generate.add_argument("--backend", choices=["ghost", "diffusion"],
                          help="check that the model renders with this backend (ghost_01: ghost; personas: diffusion)")
    _model_options(generate, backend_flag="--segmentation-backend")
    _diffusion_options(generate)
    tuning = generate.add_argument_group("on-model photo parameters (defaults from the card and the model family)")
    tuning.add_argument("--prompt", default="")
    tuning.add_argument("--negative-prompt", default="")
    tuning.add_argument("--batch-size", type=int, default=1)
    tuning.add_argument("--seed", type=int, default=-1, help="-1: random")
    tuning.add_argument("--steps", type=int, default=0)
    tuning.add_argument("--guidance", type=float, default=-1.0)
    tuning.add_argument("--ip-adapter-scale", type=float, default=0.7)
    tuning.add_argument("--controlnet-scale", type=float, default=0.8)
    tuning.add_argument("--width", type=int, default=0)
    tuning.add_argument("--height", type=int, default=0)
    tuning.add_argument("--pose", default="", help="a pose name from the model card")
    _diffusion_options(serve)
    return parser


def _diffusion_options(command: argparse.ArgumentParser) -> None:
    models = command.add_argument_group("on-model checkpoints (Hub ids or local folders; env STUDIO_*)")
    models.add_argument("--family", dest="diffusion_family", choices=list(FAMILIES),
                        help="default sdxl; flux2-klein and qwen-edit take the persona and garment as reference images")
    models.add_argument("--base-model")
    models.add_argument("--controlnet", help="an OpenPose ControlNet")
    models.add_argument("--ip-adapter", help="the IP-Adapter repository or folder")
    models.add_argument("--ip-adapter-subfolder")
    models.add_argument("--ip-adapter-weight", dest="ip_adapter_weight_name")
    models.add_argument("--image-encoder")
    models.add_argument("--image-encoder-subfolder")
    models.add_argument("--lora", help="a few-step LoRA such as SDXL-Lightning")
    models.add_argument("--lora-weight", dest="lora_weight_name")
    models.add_argument("--device", dest="diffusion_device", help="cuda, mps or cpu (default: the best there is)")
    models.add_argument("--cpu-offload", action="store_true", help="for GPUs with little memory")
    models.add_argument("--vae-tiling", action="store_true", help="for large images on small GPUs")


def _model_options(command: argparse.ArgumentParser, backend_flag: str) -> None:
    command.add_argument(backend_flag, dest="segmentation_backend", choices=SEGMENTATION_BACKENDS,
                         help="cut-out backend (env STUDIO_SEGMENTATION_BACKEND, default auto: SAM on a GPU when "
                              "its weights load, else fused: U-2-Net-p and the garment network with the classic "
                              "colour model)")
    command.add_argument("--sam-model", help="SAM checkpoint: Hub id or local folder "
                                             "(env STUDIO_SAM_MODEL, default facebook/sam-vit-base)")
    command.add_argument("--category-model", help="CLIP checkpoint for the category: Hub id or local folder "
                                                  "(env STUDIO_CATEGORY_MODEL)")


DIFFUSION_SETTINGS = ("diffusion_family", "base_model", "controlnet", "ip_adapter", "ip_adapter_subfolder",
                      "ip_adapter_weight_name", "image_encoder", "image_encoder_subfolder", "lora", "lora_weight_name",
                      "diffusion_device", "cpu_offload", "vae_tiling")


def _settings(args: argparse.Namespace) -> Settings:
    diffusion = {name: getattr(args, name) for name in DIFFUSION_SETTINGS if hasattr(args, name)}
    auth = getattr(args, "auth", None) or ("password" if getattr(args, "accounts", False) else None)
    return Settings.from_env(getattr(args, "data_dir", None), segmentation_backend=args.segmentation_backend,
                             sam_model=args.sam_model, category_model=args.category_model, auth=auth, **diffusion)


def run_serve(args: argparse.Namespace) -> int:
    from app import serve

    serve(_settings(args), host=args.host, port=args.port)
    return 0


def run_segment(args: argparse.Namespace) -> int:
    from pipeline.listing import suggest_title
    from pipeline.ingest import ingest_file
    from pipeline.reading import read_garment
    from pipeline.segmentation import get_segmenter
    from PIL import Image

    settings = _settings(args)
    segmenter = get_segmenter(settings.segmentation_backend, settings.sam_model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for image_path in args.images:
        started = time.perf_counter()
        try:
            image = ingest_file(image_path).image
            segmentation = segmenter.segment(image)
        except StudioError as error:
            _error(f"{image_path}: {error}")
            failures += 1
            continue
        mask_path = out / f"{Path(image_path).stem}.png"
        Image.fromarray(segmentation.mask, mode="L").save(mask_path)
        reading = read_garment(image, segmentation.mask, settings.category_backend, settings.category_model)
        category, colours = reading.category, reading.colours
        second = colours.secondary.name if colours.secondary else None
        print(json.dumps({
            "image": str(image_path), "mask": str(mask_path), "category": category.category,
            "category_confidence": round(category.confidence, 4), "garment_type": category.garment_type,
            "color": colours.color.name, "hex": colours.color.hex, "secondary_color": second,
            "pattern": colours.pattern,
            "title": suggest_title(category.category, colours.color.name, second, colours.pattern,
                                   category.garment_type),
            "backend": segmentation.backend, "seconds": round(time.perf_counter() - started, 3),
        }), flush=True)
    return EXIT_FAILED if failures else 0


def run_generate(args: argparse.Namespace) -> int:
    from pipeline.on_model import on_model_options
    from pipeline.studio import Studio

    marketplaces = [key for value in args.marketplace for key in _comma_list(value)]
    options = on_model_options(args.prompt, args.negative_prompt, args.batch_size, args.seed, args.steps,
                               args.guidance, args.ip_adapter_scale, args.controlnet_scale, args.width, args.height,
                               args.pose)
    studio = Studio.open(_settings(args))
    try:
        model = next((m for m in studio.virtual_models() if m["id"] == args.model), None)
        if model and args.backend and model["backend"] != args.backend:
            raise StudioError(f"{model['name']} ({args.model}) renders with the {model['backend']} backend, "
                              f"not {args.backend}.")
        garment = studio.upload_garment(args.image)
        if garment["status"] == "failed":
            raise StudioError(garment["error_message"])
        job = studio.generate(garment["id"], args.model, args.ratios, marketplaces, args.background,
                              args.file_format, wait=True, options=options)
        if job["status"] != "completed":
            raise StudioError(job["error_message"] or f"the generation ended {job['status']}")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for output in job["outputs"]:
            shape = output["marketplace"] or output["aspect_ratio"].replace(":", "x")
            number = f"-{output['image_index'] + 1}" if job["batch_size"] > 1 else ""
            source = studio.file_path(output["image_url"])
            target = out / f"{Path(args.image).stem}-{args.model}{number}-{shape}{source.suffix}"
            shutil.copyfile(source, target)
            files.append({"file": str(target), "output_id": output["id"], "aspect_ratio": output["aspect_ratio"],
                          "marketplace": output["marketplace"], "width": output["width"], "height": output["height"],
                          "seed": output["seed"], "ai_generated": bool(output["is_ai_generated"]),
                          "fidelity_delta_e": output["fidelity_delta_e"]})
        print(json.dumps({"garment_id": garment["id"], "generation_id": job["id"], "model": args.model,
                          "backend": job["backend"], "category": garment["category"], "title": garment["title"],
                          "color": garment["detected_color"], "hex": garment["detected_color_hex"],
                          "secondary_color": garment["secondary_color"], "pattern": garment["pattern"],
                          "prompt": job["prompt_used"], "outputs": files}))
    finally:
        studio.close()
    return 0


def run_users(args: argparse.Namespace) -> int:
    import getpass

    from pipeline.accounts import Accounts
    from storage import StudioDatabase

    settings = Settings.from_env(args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = StudioDatabase(settings.database_path)
    accounts = Accounts(database)
    try:
        if args.action == "list":
            for user in database.db.query("SELECT email, subscription_plan, created_at FROM users ORDER BY email"):
                print(json.dumps(user))
            return 0
        if not args.email:
            raise StudioError(f"Say whose account: resell-studio users {args.action} EMAIL")
        if args.action == "add":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
            print(json.dumps(accounts.sign_up(args.email, password, args.plan)))
            return 0
        user = database.find_user_by_email(args.email.strip().lower())
        if user is None:
            raise StudioError(f"No account for {args.email}.")
        token = accounts.create_token(user["id"], "command line")
        print(json.dumps({"email": user["email"], "token": token["token"], "id": token["id"]}))
        return 0
    finally:
        database.close()


def _error(message: str) -> None:
    print(f"resell-studio: error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runners = {"serve": run_serve, "segment": run_segment, "generate": run_generate, "users": run_users}
    try:
        return runners[args.command](args)
    except StudioError as error:
        _error(str(error))
    except KeyboardInterrupt:
        _error("interrupted")
    except OSError as error:
        _error(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
    except Exception as error:  # noqa: BLE001 - the promise is one line, not a traceback
        if os.environ.get("STUDIO_DEBUG"):
            raise
        _error(f"unexpected {type(error).__name__}: {error} (set STUDIO_DEBUG=1 for details)")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
