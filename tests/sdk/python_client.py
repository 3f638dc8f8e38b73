"""Drives the official segment-analytics-python SDK against a running `cairn serve`.

Usage: python_client.py HOST WRITE_KEY RUN_ID
Sends every call type, in several gzip-compressed batches, flushes, and prints each message the
SDK sent as one JSON line (messageId, type, ids, timestamp ...) for the Rust test to check.
"""
import json
import sys
from datetime import datetime, timezone

from segment.analytics import Client

host, write_key, run = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
analytics = Client(
    write_key=write_key,
    host=host,
    gzip=True,
    upload_size=4,  # several batches per run, not one
    max_retries=3,
    on_error=lambda error, items: errors.append(repr(error)),
)

user = f"py-user-{run}"
anon = f"py-anon-{run}"
# A past, fixed time: the server must keep it (corrected for clock skew by sentAt, which the
# SDK stamps at send time on this same machine, so the correction stays within a second).
ts = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)

sent = []


def record(result):
    ok, msg = result
    assert ok, msg
    sent.append(msg)


record(analytics.identify(user, {"email": f"{user}@example.com", "plan": "pro"}, anonymous_id=anon, timestamp=ts))
for i in range(7):
    record(analytics.track(user, "Order Completed", {"revenue": 10.5 + i, "n": i}, timestamp=ts))
record(analytics.page(user, "Docs", "Install", {"path": "/docs/install"}, timestamp=ts))
record(analytics.screen(user, "Settings", "Profile", {"tab": "profile"}, timestamp=ts))
record(analytics.group(user, f"py-group-{run}", {"name": "Acme"}, timestamp=ts))
record(analytics.alias(anon, user, timestamp=ts))
record(analytics.track(anonymous_id=anon, event="Anonymous Visit", properties={"ref": "ad"}))

analytics.flush()
analytics.join()
if errors:
    print(json.dumps({"errors": errors}), file=sys.stderr)
    sys.exit(1)


def plain(v):
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(type(v))


for m in sent:
    print(json.dumps(m, default=plain))
