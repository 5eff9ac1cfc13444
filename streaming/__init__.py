"""Live media core: rooms, slots, sources and sinks of encoded frames.

Nothing in this package knows about HTTP. Only :mod:`streaming.aiortc_glue`
touches aiortc's private attributes.
"""
