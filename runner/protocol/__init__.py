"""The sans-IO Nova Sonic protocol core: events, event templates, codec and session state."""
