"""Bookings: short links in messages (``/b/{token}``), the customer's requests made through
them or a "1" reply, and the office's answers to them."""
