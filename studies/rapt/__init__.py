"""Study cluster: one small study run serially and through a local Ray (study.py)."""
