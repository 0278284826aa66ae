#!/usr/bin/env bash
# `make run`: the whole local stack in one terminal. Starts Kafka (if not already running), creates the
# topics, migrates the database, trains a model if there is none, then runs worker, sink and gateway, waits
# until the pipeline answers within the deadline, scores a few demo transactions and follows verdicts.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
RS=.venv/bin/riskstream
LOGS=var/log
mkdir -p "$LOGS"

export RISKSTREAM_LOG_FORMAT=${RISKSTREAM_LOG_FORMAT:-text}
export RISKSTREAM_GATEWAY__API_KEYS=${RISKSTREAM_GATEWAY__API_KEYS:-local-dev-key}
API_KEY=${RISKSTREAM_GATEWAY__API_KEYS%%,*}
PORT=${RISKSTREAM_GATEWAY__PORT:-8000}
pids=()
started_kafka=0

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$started_kafka" = 1 ]; then $RS kafka stop; fi
  say "stopped; logs are in $LOGS/"
}
trap cleanup INT TERM EXIT

if ! $RS kafka status >/dev/null 2>&1; then
  started_kafka=1
  $RS kafka start
else
  say "Kafka already running; leaving it running on exit"
fi
$RS topics
$RS db upgrade
# A model built for other feature code would be refused by the worker: train one the worker can serve.
if ! .venv/bin/python -c 'from pipeline.registry import load_model; from pipeline.settings import get_settings
load_model(get_settings().model.dir)' >/dev/null 2>&1; then
  say "no model for this feature code yet: training one (make train)"
  $RS train
fi

start() {  # start NAME COMMAND...: background process with its log file
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  say "$name started (pid $!, log $LOGS/$name.log)"
}
start worker $RS worker
start sink $RS sink
start gateway $RS gateway

# Ready means a probe transaction's verdict came back within the deadline (api/readiness.py): scoring the demo
# before that showed only fallbacks on a busy machine. The wait prints what it waits for as that changes.
say "waiting until the pipeline answers a probe transaction within the deadline (gateway /readyz)"
DEMO=(.venv/bin/python examples/demo.py --url "http://127.0.0.1:$PORT" --api-key "$API_KEY"
      --worker-url "http://127.0.0.1:${RISKSTREAM_WORKER__WEB_PORT:-6066}")
"${DEMO[@]}" --wait-only --wait-s 300 || {
  say "not ready; see $LOGS/worker.log and $LOGS/gateway.log"; exit 1; }

cat <<EOT

  riskstream is running.
    Score a transaction:
      curl -s -X POST http://127.0.0.1:$PORT/v1/score \\
        -H 'Authorization: Bearer $API_KEY' -H 'Content-Type: application/json' \\
        -d '{"transaction_id":"demo-1","timestamp":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","amount":42.5,"currency":"EUR","card_id":"card-1","merchant_id":"m-1"}'
    Watch verdicts:   .venv/bin/riskstream tail      (or: kcat -b 127.0.0.1:9092 -t verdicts -C -o end)
    Analyst console:  http://127.0.0.1:$PORT/console   (sign in with the API key $API_KEY)
    API docs:         http://127.0.0.1:$PORT/docs
    Metrics:          http://127.0.0.1:$PORT/metrics
  Ctrl-C stops everything.

EOT

say "scoring a few demo transactions through the gateway"
"${DEMO[@]}" --wait-s 30 || true
say "following verdicts (Ctrl-C to stop)"
$RS tail &
pids+=($!)
wait "${pids[-1]}"
