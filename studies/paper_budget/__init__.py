"""Study paper_budget: BBT, BBTv2 and CBP at the papers' budget (study.py)."""
