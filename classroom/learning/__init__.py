"""Learners (学员) and their closed loop per unit: the roster and its personal
links, the self-study videos and the progress the server measures, reports."""
