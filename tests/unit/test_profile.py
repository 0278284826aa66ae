"""The profile summary reads py-spy's raw format (lines as py-spy 0.4 writes them with `--threads`)."""

from __future__ import annotations

from bench.profile import render, summarize

RAW = """\
thread (4041): MainThread;<module> (pipeline/cli.py);build_topology.<locals>.card_stage (pipeline/agents.py);\
process_card_batch (pipeline/stages.py);loads (orjson/__init__.py) 30
thread (4041): MainThread;<module> (pipeline/cli.py);build_topology.<locals>.card_stage (pipeline/agents.py);\
build_topology.<locals>.send_all (pipeline/agents.py);Producer.send (faust/transport/producer.py) 50
thread (4043): Thread-1 (work);Thread.run (threading.py);\
Fetcher._fetch_requests_routine (aiokafka/consumer/fetcher.py);\
AIOKafkaConsumer.getmany (aiokafka/consumer/consumer.py) 20
thread (4041): MainThread 1
not a stack line
"""


def test_samples_are_counted_under_our_stage_functions_by_package_and_by_thread() -> None:
    summary = summarize(RAW)
    assert summary.samples == 100  # the line without a frame and the garbage line are not samples
    assert summary.inclusive["process_card_batch"] == 30
    assert summary.inclusive["send_all"] == 50
    assert summary.packages == {"faust": 50, "orjson": 30, "aiokafka": 20}
    assert summary.threads == {"MainThread": 80, "Thread-1 (work)": 20}
    assert summary.inclusive["card_stage"] == 80  # the agent, under its qualified name
    assert summary.client == {"Fetcher.": 20}
    text = render(summary, "t")
    assert "| `send_all` | 50.0 % |" in text and "| aiokafka | 20.0 % |" in text
