"""Huifang application shell: settings, database, HTTP app, work queue and CLI.

This package composes the domain packages (tenancy, customers, visits, media,
messaging, campaigns, compliance); it holds no business rules of its own.
"""

__version__ = "0.1.0"
