"""Study rapt: RAPT's privacy-utility table on privatized text (study.py)."""
