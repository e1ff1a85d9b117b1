"""People who sign in: users of a company with a role, their sessions and sign-in links,
and the audit log of what each person changed."""
