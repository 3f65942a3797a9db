"""The `evaluate` stage: answer benchmark sets with one or more checkpoints, score, compare, report.

Entry point: `sayo.evaluate.run.evaluate(cfg, checkpoints)` (`sayo evaluate` on the command line).
This package init imports nothing heavy, so `sayo.train.config` can import the config section.
"""
