"""The aiohttp application: signaling, admin API, pages, and the CLI."""
