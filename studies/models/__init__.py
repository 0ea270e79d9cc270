"""Study models: zero-shot and forward speed of every registered model (study.py)."""
