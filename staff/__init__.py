"""The staff phone: a staff member's day, capture and uploads, finishing a visit."""
