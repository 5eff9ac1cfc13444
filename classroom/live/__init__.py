"""The live sessions (场次) and what happens in them: the session registry
with each session's broadcast, the discussion (研讨), the room wall's
snapshots, the relay's metrics."""
