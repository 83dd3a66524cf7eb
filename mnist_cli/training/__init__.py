"""Training a config into a run directory.

`pipeline.train` is the whole run, read top-down. Per epoch, the engine (`engines/`)
reports to `epochs.EpochEvents`, which passes each event on to the objects that own the
per-epoch state: `history` (the rows and history.csv), `progress` (the epoch clock and the
printed line), `early_stopping`, and `checkpoints` (which asks the others for their state).
`interrupt` turns Ctrl-C into a request to stop at the next safe point.
"""
