"""Photos and clips from staff phones: safe decoding, watermarks, renditions, recap videos.

Empty until the photo issue; see ARCHITECTURE.md for what goes here.
"""
