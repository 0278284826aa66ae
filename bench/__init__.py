"""`riskstream bench` / `make bench`: throughput, latency, training time, state size and reason cost,
each measured next to its baseline in the same run; results in bench/results/."""
