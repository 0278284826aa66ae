"""The worker's current model: loaded once, swapped live when `models/current` changes.

A swap happens between two batches (the join stage reads `holder.model` once per batch), so no record
is scored half by one model and half by another and nothing is dropped. A model whose feature list or
feature-code version differs from this worker's code is refused with one clear log line and the old model
keeps serving.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.registry import LoadedModel, ModelError, current_version, load_model

log = logging.getLogger("riskstream.scoring")


class ModelHolder:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.model: LoadedModel | None = None
        #: The last version refused, so a bad model is reported once, not at every poll.
        self._refused: str | None = None

    def maybe_reload(self) -> bool:
        """Load `current` if it changed; True when a new model now serves. Blocking: call in a thread."""
        try:
            version = current_version(self.models_dir)
        except (OSError, ModelError) as e:
            log.error("cannot read the current model pointer in %s: %s", self.models_dir, e)
            return False
        if version is None or version == self._refused:
            return False
        if self.model is not None and self.model.version == version:
            return False
        try:
            model = load_model(self.models_dir, version)
        except ModelError as e:
            self._refused = version
            serving = self.model.version if self.model else "none"
            log.error("refused model %s: %s; still serving model %s", version, e, serving)
            return False
        previous = self.model.version if self.model else None
        self.model = model
        self._refused = None
        log.info("serving model %s (was %s)", version, previous or "none")
        return True
