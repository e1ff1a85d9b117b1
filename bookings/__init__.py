"""Bookings: the customer's requests and the office's answers to them."""
