"""Accounts: people who sign in, their roles, and the audit log of what they change."""
