"""The benchmark's open-loop load generator: `bench/openloop/` (Go), built into .cache/go-bin, driven from here.

A Python client shared the 2 measured cores and took about a core at 500 requests/s, so at high rates the
bench measured itself. The Go program reads pre-generated request bodies (every one distinct), sends them
on a fixed schedule whatever the answers do, and times each request from its scheduled time (no coordinated
omission). It uses the standard library only: `build()` compiles it with GOPROXY=off, downloading nothing.
`scripts/setup.sh` builds it (`python -m bench.loadgen build`); `binary()` rebuilds when the source changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "openloop"
BIN_DIR = Path(__file__).resolve().parent.parent / ".cache" / "go-bin"
BINARY = BIN_DIR / "openloop"
#: Beside the binary: the digest of the source it was built from.
STAMP = BIN_DIR / "openloop.sha256"


class LoadgenError(RuntimeError):
    """The generator could not be built or run; the message says why."""


@dataclass(frozen=True)
class Answer:
    """One request: HTTP status (0: no answer, see `error`), latency from its scheduled time, verdict fields."""

    status: int
    latency_ms: float
    degraded: bool = False
    decision: str = ""
    #: The verdict's own `latency_ms` (inside the worker); None for fallbacks and non-verdict answers.
    worker_ms: float | None = None
    error: str = ""


@dataclass
class Outcome:
    answers: list[Answer] = field(default_factory=list)
    #: The generator's own figures: CPU seconds, the worst lateness of a send against its schedule, ...
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(1 for a in self.answers if a.status == 0)


def source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        if path.suffix in (".go", ".mod", ".sum") and not path.name.endswith("_test.go"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build() -> Path:
    """Compile the generator into .cache/go-bin (standard library only, nothing downloaded)."""
    go = shutil.which("go")
    if go is None:
        raise LoadgenError("Go is needed to build the load generator: `make setup` installs golang-go")
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "", "CGO_ENABLED": "0"}
    if "HOME" not in env:  # Go keeps its build cache and GOPATH under $HOME by default (a bare CI shell)
        env.setdefault("GOCACHE", str(BIN_DIR.parent / "go-build"))
        env.setdefault("GOPATH", str(BIN_DIR.parent / "go"))
    tmp = BIN_DIR / f".openloop-{os.getpid()}"
    done = subprocess.run(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise LoadgenError(f"go build of {SOURCE} failed:\n{done.stdout}{done.stderr}")
    tmp.replace(BINARY)
    STAMP.write_text(source_digest() + "\n")
    return BINARY


def is_current() -> bool:
    return BINARY.exists() and STAMP.exists() and STAMP.read_text().strip() == source_digest()


def binary() -> Path:
    """The built generator, (re)built first when missing or older than its source."""
    return BINARY if is_current() else build()


def open_loop(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    workdir: Path,
    *,
    authorization: str = "",
    timeout_s: float = 10.0,
) -> Outcome:
    """POST every body once to `url`, request i at start + i / rate; one Answer per body, in order."""
    workdir.mkdir(parents=True, exist_ok=True)
    bodies_file, out_file = workdir / "bodies.jsonl", workdir / "answers.jsonl"
    if any(b"\n" in body for body in bodies):
        raise ValueError("a request body must be one line")
    bodies_file.write_bytes(b"".join(body + b"\n" for body in bodies))
    args = [str(binary()), "-url", url, "-bodies", str(bodies_file), "-rate", f"{rate}", "-out", str(out_file)]
    args += ["-timeout", f"{timeout_s}s"]
    env = {**os.environ, "OPENLOOP_AUTHORIZATION": authorization}
    wall_limit = len(bodies) / rate + timeout_s + 60
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=wall_limit, check=False)
    if done.returncode != 0:
        raise LoadgenError(f"openloop exited {done.returncode}: {done.stderr[-2000:]}")
    answers = []
    for line in out_file.read_text().splitlines():
        r = json.loads(line)
        answers.append(
            Answer(
                status=r["status"],
                latency_ms=r["latency_ms"],
                degraded=r.get("degraded", False),
                decision=r.get("decision", ""),
                worker_ms=r.get("worker_ms"),
                error=r.get("error", ""),
            )
        )
    summary: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return Outcome(answers, summary)


def main() -> None:
    """`python -m bench.loadgen build`: build the generator if missing or stale (scripts/setup.sh)."""
    if sys.argv[1:] != ["build"]:
        raise SystemExit("usage: python -m bench.loadgen build")
    if not is_current():
        print(f"building the bench's load generator into {build()}")


if __name__ == "__main__":
    main()
