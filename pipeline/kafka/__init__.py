"""Local Apache Kafka (KRaft, no Docker) and topic administration."""
