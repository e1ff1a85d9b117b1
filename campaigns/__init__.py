"""Seasonal reminder campaigns: rules, audiences, templates and per-customer occurrences.

The pure parts, each tested on its own: ``calendar`` (solar terms, lunar festivals, 入梅),
``rules`` (rule specs and ``next_occurrence`` in each customer's local time), ``templating``
(the sandboxed message templates and previews), ``lint`` (what providers would refuse) and
``presets`` (the campaigns companies run every year). See ARCHITECTURE.md.
"""
