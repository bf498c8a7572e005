"""Test-wide settings: no analytics, no network, no reuse of a developer's Flyte cache."""

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["FLYTE_LOCAL_CACHE_ENABLED"] = "false"  # each test runs its tasks for real
