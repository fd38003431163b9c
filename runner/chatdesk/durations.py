"""Durations on the command line: 90s, 5m, 1h, 1h30m, 2d."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse(text: str) -> timedelta:
    text = text.strip().lower()
    if not text or _PART.sub("", text):
        raise ValueError(f"{text!r} is not a duration like 90s, 5m, 1h or 1h30m")
    total = timedelta()
    for amount, unit in _PART.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return total


def human(td: timedelta | None) -> str:
    if td is None:
        return "-"
    seconds = int(td.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" + (f"{seconds % 60:02d}s" if seconds % 60 else "")
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"  # "last active 265d 19h ago", not 6379h21m
