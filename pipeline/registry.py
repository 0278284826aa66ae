"""The model registry: versioned artifacts in `models/<version>/` and two atomic pointers, `models/current`
(the champion, which decides) and `models/challenger` (scored beside it, never acting).

Training writes (`write_model`, `activate`), workers read (`current_version`, `load_model`); workers never
import `training/`. A model is XGBoost's own UBJ format plus `metadata.json` — never pickle. A version is
complete once its directory exists under its final name (it is written elsewhere and renamed), and a
pointer is a symlink replaced with one `rename`, so a worker never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.features import FEATURE_CODE_VERSION, FEATURE_NAMES

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
CURRENT = "current"
CHALLENGER = "challenger"
#: Names that are pointers in the models folder, never versions.
POINTERS = (CURRENT, CHALLENGER)


class ModelError(RuntimeError):
    """A model cannot be used; the message says which and why."""


@dataclass
class ModelMetadata:
    version: str
    created_at: str
    feature_code_version: str
    feature_names: list[str]
    data_fingerprint: str
    params: dict[str, Any]
    #: {"review": float, "decline": float, "policy": "fpr" | "cost"} on the calibrated score.
    thresholds: dict[str, Any]
    #: Isotonic calibration knots {"x": [...], "y": [...]} from raw model output to probability.
    calibration: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    report_files: list[str] = field(default_factory=list)
    #: Quantile bins of the features and the score, and the flag rate, on held-out rows (pipeline.drift);
    #: None in models trained before drift monitoring.
    drift_reference: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetadata:
        known = {f for f in cls.__dataclass_fields__}
        missing = sorted(known - {"metrics", "report_files", "drift_reference"} - set(data))
        if missing:
            raise ModelError(f"metadata.json lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def write_model(
    models_dir: Path, booster: Any, metadata: ModelMetadata, extra_files: Mapping[str, Path] | None = None
) -> Path:
    """Write `models/<version>/` completely, then move it into place under its final name."""
    if metadata.version in POINTERS:
        raise ModelError(f"{metadata.version!r} names a pointer, not a version")
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / metadata.version
    if final.exists():
        raise ModelError(f"model version {metadata.version} already exists in {models_dir}")
    staging = models_dir / f".tmp-{metadata.version}-{uuid.uuid4().hex[:6]}"
    staging.mkdir()
    try:
        booster.save_model(str(staging / MODEL_FILE))
        (staging / METADATA_FILE).write_text(json.dumps(asdict(metadata), indent=2, default=_json_default))
        for name, path in (extra_files or {}).items():
            shutil.copyfile(path, staging / name)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def list_models(models_dir: Path) -> list[ModelMetadata]:
    """Complete versions, oldest first (unreadable ones are skipped)."""
    out: list[ModelMetadata] = []
    if not models_dir.is_dir():
        return out
    for path in sorted(models_dir.iterdir()):
        if path.name.startswith(".") or path.name in POINTERS or not path.is_dir() or path.is_symlink():
            continue
        try:
            out.append(read_metadata(path))
        except ModelError:
            continue
    return sorted(out, key=lambda m: m.created_at)


def read_metadata(version_dir: Path) -> ModelMetadata:
    try:
        data = json.loads((version_dir / METADATA_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{version_dir / METADATA_FILE}: unreadable ({e})") from e
    return ModelMetadata.from_dict(data)


def pointer_version(models_dir: Path, pointer: str) -> str | None:
    """The version a pointer (`CURRENT`, `CHALLENGER`) names, or None when it is not set."""
    link = models_dir / pointer
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def current_version(models_dir: Path) -> str | None:
    """The version `current` points to, or None when there is no model yet."""
    return pointer_version(models_dir, CURRENT)


def challenger_version(models_dir: Path) -> str | None:
    """The version `challenger` points to, or None when no challenger is set."""
    return pointer_version(models_dir, CHALLENGER)


def _point(models_dir: Path, pointer: str, version: str) -> None:
    """Point `pointer` at a complete `version`, atomically: a new symlink renamed over the old."""
    target = models_dir / version
    if version in POINTERS or not (target / MODEL_FILE).is_file() or not (target / METADATA_FILE).is_file():
        raise ModelError(f"no complete model version {version!r} in {models_dir}")
    read_metadata(target)
    tmp = models_dir / f".{pointer}-{uuid.uuid4().hex[:6]}"
    os.symlink(version, tmp)
    os.replace(tmp, models_dir / pointer)


def activate(models_dir: Path, version: str) -> None:
    """Point `current` at `version` (also a rollback), atomically."""
    _point(models_dir, CURRENT, version)


def activate_challenger(models_dir: Path, version: str) -> None:
    """Point `challenger` at `version`, atomically; the champion itself is refused (nothing to compare)."""
    if version == current_version(models_dir):
        raise ModelError(f"{version} is the champion (current); a challenger must be another version")
    _point(models_dir, CHALLENGER, version)


def clear_challenger(models_dir: Path) -> str | None:
    """Remove the `challenger` pointer (one unlink); returns the version it named, if any."""
    version = challenger_version(models_dir)
    if version is not None:
        (models_dir / CHALLENGER).unlink(missing_ok=True)
    return version


def promote(models_dir: Path) -> tuple[str | None, str]:
    """Make the challenger the champion: one rename of `current` to the challenger's version, then the
    `challenger` pointer removed. Returns (previous champion, new champion).

    Atomic across workers: every worker reads the shared models directory (a volume in Kubernetes) and
    swaps its models between two batches at its next poll (`pipeline.scoring.ModelHolder`), reading both
    pointers together. A batch is scored by the champion loaded for the whole batch and every verdict names
    it (`model_version`), so no batch — hence no verdict — is decided half by one model and half by the
    other. Workers switch at their own next poll (within `model.reload_interval_seconds`), so for that
    moment two workers may serve different champions, each for whole batches. Between the rename and the
    unlink a poll sees the new champion also named as challenger: a worker scores no challenger equal to its
    champion, so that instant changes nothing.
    """
    version = challenger_version(models_dir)
    if version is None:
        raise ModelError(f"no challenger in {models_dir} to promote")
    previous = current_version(models_dir)
    _point(models_dir, CURRENT, version)
    (models_dir / CHALLENGER).unlink(missing_ok=True)
    return previous, version


@dataclass
class LoadedModel:
    """A model ready to serve: booster pinned to one thread and warmed up, calibration as arrays."""

    version: str
    metadata: ModelMetadata
    booster: Any
    _knots_x: npt.NDArray[np.float64]
    _knots_y: npt.NDArray[np.float64]

    @property
    def thresholds(self) -> Mapping[str, Any]:
        return self.metadata.thresholds

    def score(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated fraud probability per row (rows in FEATURE_NAMES order, NaN = missing)."""
        raw = np.asarray(self.booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)
        return np.interp(raw, self._knots_x, self._knots_y)


def check_compatible(metadata: ModelMetadata) -> None:
    """Refuse a model trained on other features than this code computes."""
    if list(metadata.feature_names) != list(FEATURE_NAMES):
        ours, theirs = set(FEATURE_NAMES), set(metadata.feature_names)
        detail = (
            f"missing here {sorted(theirs - ours)[:5]}, new here {sorted(ours - theirs)[:5]}"
            if ours != theirs
            else "same names in another order"
        )
        raise ModelError(f"feature list differs from this worker's feature code ({detail})")
    if metadata.feature_code_version != FEATURE_CODE_VERSION:
        raise ModelError(
            f"trained with feature code {metadata.feature_code_version}, this worker runs {FEATURE_CODE_VERSION}"
        )


def load_model(models_dir: Path, version: str | None = None) -> LoadedModel:
    """Load `version` (default: current) for serving, or raise ModelError saying why not."""
    import xgboost as xgb

    version = version or current_version(models_dir)
    if version is None:
        raise ModelError(f"no current model in {models_dir}")
    path = models_dir / version
    metadata = read_metadata(path)
    check_compatible(metadata)
    booster = xgb.Booster()
    try:
        booster.load_model(str(path / MODEL_FILE))
    except (xgb.core.XGBoostError, OSError) as e:
        raise ModelError(f"{path / MODEL_FILE}: cannot load ({e})") from e
    booster.set_param({"nthread": 1})
    knots = metadata.calibration
    try:
        x = np.asarray(knots["x"], dtype=np.float64)
        y = np.asarray(knots["y"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path / METADATA_FILE}: calibration is malformed ({e})") from e
    if len(x) == 0 or len(x) != len(y) or np.any(np.diff(x) < 0):
        raise ModelError(f"{path / METADATA_FILE}: calibration knots must be increasing x with matching y")
    model = LoadedModel(version, metadata, booster, x, y)
    model.score(np.full((4, len(FEATURE_NAMES)), np.nan))  # warm up: first predict allocates
    return model
