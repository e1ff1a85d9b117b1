"""今日: what the office has to do today, in one call cheap enough to poll."""
