"""Lecture archive media: recorder (a sink of a slot), finishing, replay source, import."""
