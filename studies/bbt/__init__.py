"""Study bbt: sst2 baselines, zero-shot, BBT, BBTv2 and white-box prompt tuning (study.py)."""
