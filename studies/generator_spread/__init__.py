"""Study generator_spread: how far the stage-1 generator alone moves CBP's z0 (study.py)."""
