"""Fixtures shared by the campaign tests: test_results' hand-checked data (a campaign sent,
a company's history of visits), also read by test_figures."""

from tests.campaigns.test_results import history, sent_campaign

__all__ = ["history", "sent_campaign"]
