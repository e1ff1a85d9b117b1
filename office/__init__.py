"""The office console: server-rendered pages in Chinese for the people who run a company's
follow-ups, on the same services the ``/v1`` API uses."""
