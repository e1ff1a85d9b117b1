"""The gate every send passes: consent, suppression, frequency caps, quiet hours, message rules.

Empty until the sending issue; see ARCHITECTURE.md for what goes here.
"""
