"""Who attended: the pure interval computation, the log of rooms' viewer
events, the session, unit and district reports, and their charts."""
