"""Study ablations: BBT sweeps over population, intrinsic dimension and sigma0 (study.py)."""
