"""Customers of a company: their records, phone numbers and list imports."""
