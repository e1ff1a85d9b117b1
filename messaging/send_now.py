"""Send messages someone is waiting for as soon as the request commits (not at the next tick).

For what a person does in the console or through the API (an answer, a booking answered):
the rows are moved ``scheduled → queued`` in the request's transaction and one
``send_message`` task each is published after the commit. Pages and routes call this one
helper, so neither reaches for the tasks module itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.orm import Session

from huifang.worker import enqueue
from messaging import service, tasks


def send_now(*, session: Session, message_ids: Sequence[int], now: dt.datetime) -> list[int]:
    """Queue the scheduled ones of ``message_ids`` and publish them after commit."""
    queued = service.queue_now(session=session, message_ids=list(message_ids), now=now)
    for message_id in queued:
        enqueue(session, tasks.send_message, message_id=message_id)
    return queued
