"""Lecture archive: recorder (a sink of a slot), catalog, finishing, replay source."""
