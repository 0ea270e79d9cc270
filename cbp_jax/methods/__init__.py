"""End-to-end methods (zero-shot, BBT, CBP-Tuning, POST, RAPT) built on the model and data."""
