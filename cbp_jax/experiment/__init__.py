"""The experiment layer: plan -> run -> record -> report, one implementation for every table.

A run's identity is the hash of its resolved config (`identity`); finished runs are appended
to a committed JSONL (`records`) and a table is produced from its records only
(`layer.run_cells`, `tables`), so a fresh clone regenerates it byte for byte and resumes
what is missing. `legacy` renders the numbers of runs made before the papers' call unit.
"""
