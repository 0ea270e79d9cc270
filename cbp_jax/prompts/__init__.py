"""Prompt parameterisations: BBT's random projection, CBP's generator and its saved artifact."""
