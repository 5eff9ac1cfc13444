"""The school's domain: catalog, access, live sessions, the archive, attendance.

Below the HTTP layer: nothing in this package imports aiohttp or anything from
``web/``. ``school.py`` builds every service in one place (the composition
root) and holds the use cases that touch several; ``errors.py`` is what the
domain raises, mapped to HTTP statuses once in ``web/errors.py``.
"""
