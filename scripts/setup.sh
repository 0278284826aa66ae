#!/usr/bin/env bash
# Install what riskstream needs on a fresh Debian/Ubuntu machine, skipping whatever is already there:
# system packages (Java 17, Maven, PostgreSQL, kcat, Go), the virtualenv with the project, the benchmark's
# load generator (built from bench/openloop with Go) and the Kafka jars.
# Safe to run again: every step checks first. Used by `make setup`, `make run`, `make test` and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to install system packages: $*" >&2; exit 1; fi
}

# --- system packages ------------------------------------------------------------------------------------
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v kcat >/dev/null || missing+=(kcat)
command -v go >/dev/null || missing+=(golang-go)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v "$PYTHON" >/dev/null || missing+=(python3.11)
"$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3.11-venv)
# Tests only: the console's browser test drives Debian's headless chromium through chromium-driver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- virtualenv and the project -------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.riskstream-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing riskstream and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  echo "$want" >"$stamp"
fi

# --- the benchmark's load generator: Go, standard library only, built into .cache/go-bin (no download) --
"$VENV/bin/python" -m bench.loadgen build

# --- Kafka broker jars from Maven Central (pinned version, cached outside git) --------------------------
"$VENV/bin/riskstream" kafka fetch
