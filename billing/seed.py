"""The plans every installation starts with (Free, Pro, Enterprise).

Used by the data migration and by ``billing.selectors.default_plan`` (which re-creates them when a test flush
or an operator emptied the table), so both always agree. Staff edit the rows afterwards; re-seeding never
overwrites an existing plan.
"""

from __future__ import annotations

from typing import Any

MB = 1024 * 1024

SEED_PLANS: list[dict[str, Any]] = [
    {
        "code": "free",
        "name": "Free",
        "description": "60 audio minutes a month to try every feature.",
        "included_minutes": 60,
        "overage_allowed": False,
        "max_file_bytes": 25 * MB,
        "max_audio_seconds": 10 * 60,
        "max_video_pixels": 1920 * 1080,
        "max_video_fps": 60,
        "max_video_pixel_rate": 1920 * 1080 * 60,
        "max_concurrent_jobs": 5,
        "rate_limits": {"watermark": 30, "emotion": 30, "media": 10, "read": 300, "default": 60},
        "retention_days": 7,
        "request_log_days": 7,
        "sort_order": 0,
    },
    {
        "code": "pro",
        "name": "Pro",
        "description": "1,000 audio minutes a month, then metered.",
        "included_minutes": 1000,
        "overage_allowed": True,
        "max_file_bytes": 100 * MB,
        "max_audio_seconds": 30 * 60,
        "max_video_pixels": 3840 * 2160,
        "max_video_fps": 60,
        "max_video_pixel_rate": 3840 * 2160 * 60,
        "max_concurrent_jobs": 20,
        "rate_limits": {"watermark": 120, "emotion": 120, "media": 30, "read": 1200, "default": 300},
        "retention_days": 30,
        "request_log_days": 30,
        "sort_order": 10,
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "description": "10,000 audio minutes a month, then metered; higher limits.",
        "included_minutes": 10000,
        "overage_allowed": True,
        "max_file_bytes": 500 * MB,
        "max_audio_seconds": 3 * 3600,
        "max_video_pixels": 3840 * 2160,
        "max_video_fps": 60,
        "max_video_pixel_rate": 3840 * 2160 * 60,
        "max_concurrent_jobs": 100,
        "rate_limits": {"watermark": 600, "emotion": 600, "media": 120, "read": 6000, "default": 1200},
        "retention_days": 90,
        "request_log_days": 90,
        "sort_order": 20,
        "is_public": False,
    },
]


def ensure_seed_plans(plan_model) -> None:
    """Create the seed plans that do not exist yet (by code). Works with a migration's historical model."""
    fields = {f.name for f in plan_model._meta.get_fields()}
    for spec in SEED_PLANS:
        values = {k: v for k, v in spec.items() if k in fields and k != "code"}
        plan_model.objects.get_or_create(code=spec["code"], defaults=values)
