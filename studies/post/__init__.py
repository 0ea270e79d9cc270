"""Study post: POST, DP prompt tuning on a distilled student and its transfer (study.py)."""
