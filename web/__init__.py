"""The HTTP layer: routes grouped by who calls them, the CLI, static files."""
