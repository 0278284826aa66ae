"""`riskstream backtest`: test a rule set (and a model) on past payments before it goes live.

`history` reads the past (a file or the database), `replay` computes its features with the stream's own code
and applies the rules over whole columns, `metrics` compares with what was served and with the labels,
`report` writes summary.json, report.md and report.html; `run` ties them together.
"""
