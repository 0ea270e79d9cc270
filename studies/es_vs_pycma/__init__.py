"""Study es_vs_pycma: our CMA-ES against pycma on test functions (study.py)."""
