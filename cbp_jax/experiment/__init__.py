"""The experiment layer: plan -> run -> record -> report, one implementation for every table.

A run's identity is the hash of its whole resolved config (`identity.config_hash`), never
its path. Finished runs are appended to a committed `<table>_runs.jsonl`
(`records.RecordStore`), each with its config, result, commit and dtype; a table is
produced from its records only (`layer.run_cells`, then the table's report), so a fresh
clone regenerates it byte-identically and resumes whatever is missing. A committed record
whose config no longer matches the plan is refused with the differing fields named.
`tables` is the records side every table script shares (write/check a table from records,
one-cell sub-runs); `legacy` keeps the numbers of runs made before the papers' call unit as
marked records (cells as the table showed them, old unit, source file and commit).
"""
