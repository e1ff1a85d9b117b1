"""Seasonal reminder campaigns: rules, audiences, templates and per-customer occurrences.

Empty until the campaigns issue; see ARCHITECTURE.md for what goes here.
"""
