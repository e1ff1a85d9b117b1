"""The campaign list's "next sends": per campaign, when its next message is due and how
many are due in the coming week (occurrences waiting, in one grouped query)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns.models import PENDING, CampaignOccurrence

WEEK = dt.timedelta(days=7)


@dataclass(frozen=True)
class NextSends:
    next_due: dt.datetime | None
    this_week: int  # waiting occurrences due within seven days
    waiting: int  # all waiting occurrences


def next_sends(
    *, session: Session, tenant_id: int, campaign_ids: Sequence[int], now: dt.datetime
) -> dict[int, NextSends]:
    if not campaign_ids:
        return {}
    rows = session.execute(
        select(
            CampaignOccurrence.campaign_id,
            func.min(CampaignOccurrence.due_at),
            func.coalesce(func.sum(case((CampaignOccurrence.due_at < now + WEEK, 1), else_=0)), 0),
            func.count(),
        )
        .where(
            CampaignOccurrence.tenant_id == tenant_id,
            CampaignOccurrence.campaign_id.in_(list(campaign_ids)),
            CampaignOccurrence.status == PENDING,
        )
        .group_by(CampaignOccurrence.campaign_id)
    )
    found = {int(cid): NextSends(due, int(week), int(total)) for cid, due, week, total in rows}
    return {cid: found.get(cid, NextSends(None, 0, 0)) for cid in campaign_ids}
