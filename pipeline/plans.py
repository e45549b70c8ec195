"""Subscription plans and their limits: the one place to change what each plan allows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    name: str
    generations_per_day: int  # jobs started per UTC day, ghost and on-model alike
    max_batch_size: int  # on-model images per job
    max_long_side: int  # pixels, for any output or generated image
    concurrent_jobs: int  # pending or processing at once
    storage_mb: int  # originals, cut-outs and outputs together

    def as_dict(self) -> dict:
        return asdict(self)


PLANS: dict[str, Plan] = {
    "free": Plan("free", generations_per_day=30, max_batch_size=2, max_long_side=1600, concurrent_jobs=2,
                 storage_mb=500),
    "pro": Plan("pro", generations_per_day=300, max_batch_size=4, max_long_side=2500, concurrent_jobs=4,
                storage_mb=10_000),
    "enterprise": Plan("enterprise", generations_per_day=3000, max_batch_size=4, max_long_side=4096,
                       concurrent_jobs=16, storage_mb=200_000),
}
UPGRADE = {"free": "pro", "pro": "enterprise"}


def plan_for(name: str) -> Plan:
    return PLANS[name]


def day_start(now: datetime | None = None) -> datetime:
    """Quotas count from 00:00 UTC."""
    now = now or datetime.now(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def resets_in(now: datetime | None = None) -> str:
    """How long until the daily quota resets, in words: "3 h 12 min"."""
    now = now or datetime.now(timezone.utc)
    left = day_start(now) + timedelta(days=1) - now
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def upgrade_hint(plan: Plan) -> str:
    better = UPGRADE.get(plan.name)
    return f" The {better} plan allows more." if better else ""
