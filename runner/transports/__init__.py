"""Transports carry Nova Sonic event payloads to and from a model (see base.py)."""
