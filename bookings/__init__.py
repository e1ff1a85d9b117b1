"""Short links in messages and the bookings made through them (``/b/{token}``, "1" replies)."""
