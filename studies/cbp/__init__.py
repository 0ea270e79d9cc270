"""Study cbp: CBP-Tuning per domain against BBT, BBTv2 and prompt tuning (study.py)."""
