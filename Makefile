# riskstream — the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
RS := $(VENV)/bin/riskstream
PYTEST_ARGS ?=

.PHONY: help setup run test test-all test-deploy lint format train bench up down kafka-start kafka-stop clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1mmake %-12s\033[0m %s\n", $$1, $$2}'

setup: ## Install what is missing: apt packages, virtualenv + project, Kafka jars
	@scripts/setup.sh

run: setup ## Start Kafka, topics, database, a model if none, worker + sink + gateway; Ctrl-C stops all
	@scripts/run.sh

test: setup ## The whole suite (without soak tests) plus deployment-file validation
	$(VENV)/bin/pytest -m "not soak" $(PYTEST_ARGS)
	@scripts/validate-deploy.sh

test-all: setup ## Everything, soak tests included
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	@scripts/validate-deploy.sh

test-deploy: ## helm lint, helm template | kubeconform -strict, docker compose config
	@scripts/validate-deploy.sh

lint: setup ## ruff (format check + lint) and mypy
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: setup ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

train: setup ## Generate data if none, train, evaluate, activate a new model in models/
	$(RS) train

bench: setup ## Benchmarks on the local stack; results in bench/results/
	$(RS) bench --profile

up: ## docker compose up (needs Docker and a .env; see .env.example)
	docker compose up -d --wait

down: ## docker compose down
	docker compose down

kafka-start: setup ## Start the local Kafka broker
	$(RS) kafka start

kafka-stop: ## Stop the local Kafka broker
	$(RS) kafka stop

clean: ## Stop local Kafka and remove local state (var/), keeping models and caches
	-$(RS) kafka stop
	rm -rf var
