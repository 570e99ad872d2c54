"""When the next scheduled training is due: an interval ('15m') or a cron expression.

Core code: settings validate a schedule with it, and the serving scheduler and `train --schedule`
wait on it, without either importing the other.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter

OFF = "off"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval_seconds(value: str) -> float | None:
    """'90s', '15m', '1h', '2d' → seconds; anything else → None."""
    if len(value) >= 2 and value[-1] in _UNITS and value[:-1].isdigit() and int(value[:-1]) > 0:
        return float(int(value[:-1]) * _UNITS[value[-1]])
    return None


def is_valid_schedule(value: str) -> bool:
    return value == OFF or parse_interval_seconds(value) is not None or croniter.is_valid(value)


def seconds_until_next(schedule: str, now: datetime | None = None) -> float | None:
    """Seconds to the next scheduled refresh; None when the schedule is off."""
    if schedule == OFF:
        return None
    interval = parse_interval_seconds(schedule)
    if interval is not None:
        return interval
    now = now or datetime.now(UTC)
    return max(0.0, (croniter(schedule, now).get_next(datetime) - now).total_seconds())
