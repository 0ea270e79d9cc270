"""Study precision: float32 against bfloat16, the same runs and seeds (study.py)."""
