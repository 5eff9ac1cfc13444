"""The lecture archive as the school sees it: items and their states,
recording control and library links; replays of archived lectures into
sessions; timeshift (a room watching from the start)."""
