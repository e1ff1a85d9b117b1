"""The visit report: its page, long image, MMS parts, recap video, sending and conversion."""
