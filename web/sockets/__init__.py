"""The WebSockets: room events (研讨) and the room wall."""
