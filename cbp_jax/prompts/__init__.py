"""Prompt parameterisations: BBT's random projection (and, later, CBP's generator)."""
