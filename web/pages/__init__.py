"""The pages people open: login, console, room, presenter, library, wall."""
