"""Hot reload: the worker polls the rules directory (cheap: names, sizes, mtimes) and swaps the rule set.

A rule set that fails to load is logged once with file, line and reason; the previous set keeps
serving, so a bad edit never interrupts scoring. SIGHUP forces a reload.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.rules.engine import RulesError, RuleSet, empty_rules, load_rules

log = logging.getLogger("riskstream.rules")


class RulesWatcher:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rules: RuleSet = empty_rules()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._failed_stamp: tuple[tuple[str, int, int], ...] | None = None
        self.reload()

    def _current_stamp(self) -> tuple[tuple[str, int, int], ...]:
        if not self.directory.is_dir():
            return ()
        paths = [*self.directory.glob("*.y*ml"), *self.directory.glob("lists/*.txt")]
        out = []
        for path in sorted(paths):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((str(path), st.st_size, st.st_mtime_ns))
        return tuple(out)

    def maybe_reload(self) -> RuleSet | None:
        """Reload when a file changed; the new set, or None when nothing changed or the change was refused."""
        stamp = self._current_stamp()
        if stamp == self._stamp or stamp == self._failed_stamp:
            return None
        return self.reload(stamp)

    def reload(self, stamp: tuple[tuple[str, int, int], ...] | None = None) -> RuleSet | None:
        stamp = stamp if stamp is not None else self._current_stamp()
        try:
            rules = load_rules(self.directory)
        except (RulesError, OSError) as e:
            self._failed_stamp = stamp
            log.error("rules refused, still serving version %s: %s", self.rules.version, e)
            return None
        previous = self.rules.version
        self.rules, self._stamp, self._failed_stamp = rules, stamp, None
        if rules.version != previous:
            log.info("rules version %s loaded (%d rules), was %s", rules.version, len(rules.rules), previous)
        return rules
