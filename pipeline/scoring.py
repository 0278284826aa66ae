"""The worker's models: the champion (`models/current`) and an optional challenger (`models/challenger`),
loaded once, swapped live when a pointer changes.

A swap happens between two batches (the join stage reads the models once per batch), so no record is
scored half by one model and half by another and nothing is dropped. The pair is replaced as one value, so
a batch never sees a champion from one poll and a challenger from another. A model whose feature list or
feature-code version differs from this worker's code is refused with one clear log line: the old champion
keeps serving; a refused challenger is not scored (the previous one neither: it is no longer the one asked
for).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.registry import CHALLENGER, CURRENT, LoadedModel, ModelError, load_model, pointer_version

log = logging.getLogger("riskstream.scoring")


class ModelHolder:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        #: (champion, challenger), replaced whole by `maybe_reload`.
        self._pair: tuple[LoadedModel | None, LoadedModel | None] = (None, None)
        #: The last version refused per pointer, so a bad model is reported once, not at every poll.
        self._refused: dict[str, str | None] = {CURRENT: None, CHALLENGER: None}

    @property
    def model(self) -> LoadedModel | None:
        """The champion: it decides."""
        return self._pair[0]

    @property
    def challenger(self) -> LoadedModel | None:
        return self._pair[1]

    def challenger_for(self, champion: LoadedModel) -> LoadedModel | None:
        """The challenger to score beside `champion`: None when a reload replaced the pair since `champion`
        was read (that batch goes without a challenger rather than with a mismatched one) or when it names
        the champion's own version (the instant of a promotion)."""
        held, challenger = self._pair
        if held is not champion or challenger is None or challenger.version == champion.version:
            return None
        return challenger

    def maybe_reload(self) -> bool:
        """Reload whichever pointer changed; True when the pair serving changed. Blocking: call in a thread."""
        champion, challenger = self._pair
        new_champion = self._load(CURRENT, champion, keep_on_unset=True)
        new_challenger = self._load(CHALLENGER, challenger, keep_on_unset=False)
        if new_champion is champion and new_challenger is challenger:
            return False
        self._pair = (new_champion, new_challenger)
        return True

    def _load(self, pointer: str, held: LoadedModel | None, *, keep_on_unset: bool) -> LoadedModel | None:
        try:
            version = pointer_version(self.models_dir, pointer)
        except OSError as e:
            log.error("cannot read the %s model pointer in %s: %s", pointer, self.models_dir, e)
            return held
        if version is None:
            if held is not None and not keep_on_unset:
                log.info("no %s model any more (was %s)", pointer, held.version)
                return None
            return held
        if held is not None and held.version == version:
            return held
        if version == self._refused[pointer]:
            return held if keep_on_unset else None
        try:
            model = load_model(self.models_dir, version)
        except ModelError as e:
            self._refused[pointer] = version
            if keep_on_unset:
                log.error("refused model %s: %s; still serving model %s", version, e, held.version if held else "none")
                return held
            log.error("refused challenger model %s: %s; no challenger scored", version, e)
            return None
        self._refused[pointer] = None
        role = "serving model" if pointer == CURRENT else "challenger model"
        log.info("%s %s (was %s)", role, version, held.version if held else "none")
        return model
