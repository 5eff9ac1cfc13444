"""Who may open what: admin accounts and passwords, bearer tokens, signed
invitation links (one per session and site)."""
