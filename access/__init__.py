"""Who may do what (roles and permissions), who is acting (a person or an API key), and
the audit log of what each changed. The lowest layer: every domain records its changes
here, so it imports no domain."""
