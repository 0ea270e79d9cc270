"""The studies of this checkout: one folder each (spec, records, tables, reading).

Run through `cbp-jax study NAME run|table|status` (cbp_jax/cli_study.py).
"""
