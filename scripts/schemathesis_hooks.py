"""Schemathesis hooks for scripts/schemathesis.sh (SCHEMATHESIS_HOOKS).

One rule of the API moves with the clock: `deliver_at` may be at most
MAX_DELAY (30 days by default) ahead of now. No schema can say that, so a
time drawn for a case the document calls valid would be accepted or refused
depending on the day of the run. In those cases a time more than a day ahead
is moved to the same day and time in the year 2000 (a leap year, so every
date exists), which the API takes as "deliver now". Nothing else is touched,
and cases meant to be invalid are left as drawn.
"""

from datetime import datetime, timedelta, timezone

import schemathesis

AHEAD = timedelta(days=1)


def _in_the_past(job):
    if not isinstance(job, dict) or not isinstance(job.get("deliver_at"), str):
        return
    raw = job["deliver_at"]
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return
    if at.tzinfo is not None and at - datetime.now(timezone.utc) > AHEAD:
        job["deliver_at"] = "2000" + raw[4:]


@schemathesis.hook
def map_case(ctx, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    body = case.body
    if isinstance(body, dict):
        _in_the_past(body)
        for job in body.get("jobs") or []:
            _in_the_past(job)
    return case
