"""`mnist sweep`: many runs of one base config, searched with Optuna.

`schema.py` the sweep file; `folder.py` the sweep folder's layout; `study.py` the Optuna
study, its storage and who owns a running trial; `worker.py` the loop that trains trials in
processes of their own; `trial.py` one trial's process; `results.py` the table, trials.csv,
sweep.png and the seed statistics; `run.py` the command, read top-down.
"""
