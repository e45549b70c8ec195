"""A sign-in flood against a studio with accounts: how long a signed-in seller's requests take meanwhile.

    .venv/bin/python benchmarks/sign_in_flood.py [--flooders 8] [--requests 60] [--warmup 2]

Serves a real studio with `--accounts` in this process (the launched Gradio server, the sign-in guard included)
and signs one seller in. Then, three times, the seller makes `--requests` API calls (`/gradio_api/run/list_garments`,
one after another) and each is timed: with nobody else, while `--flooders` clients post wrong passwords for
different emails as fast as they can (each answer awaited, then the next), and the same flood once more with the
per-client limit lifted, so that every attempt costs a full scrypt check. Prints JSON: p50/p95/max of the
seller's requests in each case, and how the flood's attempts were answered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import Access, create_demo, launch_options  # noqa: E402
from pipeline import accounts as accounts_module  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.studio import Studio  # noqa: E402

SELLER = ("seller@example.com", "a long enough password")


def seller_latencies(url: str, cookies: dict, requests: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, cookies=cookies, timeout=60) as seller:
        for _ in range(requests):
            started = time.perf_counter()
            answer = seller.post("gradio_api/run/list_garments", json={"data": [50, 0]})
            times.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    return times


def flood(url: str, flooders: int, stop: threading.Event, answers: Counter) -> list[threading.Thread]:
    def attack(number: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as attacker:
            attempt = 0
            while not stop.is_set():
                attempt += 1
                reply = attacker.post("login", data={"username": f"victim{number}-{attempt}@example.com",
                                                     "password": "guess"})
                answers[reply.status_code] += 1

    threads = [threading.Thread(target=attack, args=(number,), daemon=True) for number in range(flooders)]
    for thread in threads:
        thread.start()
    return threads


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1)}


def measure(url: str, cookies: dict, flooders: int, requests: int, warmup_s: float) -> dict:
    stop, answers = threading.Event(), Counter()
    threads = flood(url, flooders, stop, answers) if flooders else []
    time.sleep(warmup_s if flooders else 0)
    times = seller_latencies(url, cookies, requests)
    stop.set()
    for thread in threads:
        thread.join()
    return {**summary(times), "flood_answers": {str(code): count for code, count in sorted(answers.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flooders", type=int, default=8)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of flood before the seller starts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        studio = Studio.open(Settings.from_env(Path(folder) / "data"))
        access = Access(studio, "password")
        access.accounts.sign_up(*SELLER)
        demo = create_demo(studio, access)
        demo.queue(default_concurrency_limit=4)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(studio, access))
        try:
            signed_in = httpx.post(f"{url}login", data={"username": SELLER[0], "password": SELLER[1]})
            cookies = dict(signed_in.cookies)
            results = {"alone": measure(url, cookies, 0, args.requests, args.warmup),
                       "flood": measure(url, cookies, args.flooders, args.requests, args.warmup)}
            accounts_module.FAILED_SIGN_INS_PER_CLIENT = 10**9  # every attempt now costs a scrypt check
            access.accounts.client_attempts.allowed = 10**9
            results["flood_without_client_limit"] = measure(url, cookies, args.flooders, args.requests, args.warmup)
        finally:
            demo.close()
            studio.close()
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                      "flooders": args.flooders, "seller_requests": args.requests, **results}, indent=2))


if __name__ == "__main__":
    main()
