"""SHAP for registered models: one explainer per model version per process.

Tree models (LightGBM, XGBoost, scikit-learn forests and boosting) use TreeExplainer
in the model's raw output (margin: log odds for binary classifiers, the prediction
for regressors; probability for scikit-learn forests, whose trees vote
probabilities). Other models use shap.Explainer on their output function with a
small sample of the registered background data, sized so one explanation stays
within EXPLAINER_MAX_SECONDS.
"""

import hashlib
import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from django.conf import settings

from opsconsole.errors import ConsoleError

from .models import Framework, ModelVersion, OutputSpace

logger = logging.getLogger(__name__)

BACKGROUND_MAX_ROWS = 100
BACKGROUND_MIN_ROWS = 10

_SKLEARN_TREE_CLASSES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "IsolationForest",
)
# scikit-learn classifiers whose trees hold class probabilities, not a margin.
_PROBABILITY_TREE_CLASSES = (
    "DecisionTreeClassifier",
    "ExtraTreeClassifier",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
)


class MissingValuesNotExplainable(ConsoleError):
    """Only tree models handle missing values; others cannot score a null."""

    status_code = 422
    code = "unexplainable"


class ArtifactError(Exception):
    """The stored artifact is missing or is not the file that was registered."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def class_path(estimator) -> str:
    return f"{type(estimator).__module__}.{type(estimator).__name__}"


def detect_framework(estimator) -> str | None:
    module = type(estimator).__module__.split(".")[0]
    return {
        "sklearn": Framework.SCIKIT_LEARN,
        "lightgbm": Framework.LIGHTGBM,
        "xgboost": Framework.XGBOOST,
    }.get(module)


def is_tree_model(estimator) -> bool:
    framework = detect_framework(estimator)
    if framework in (Framework.LIGHTGBM, Framework.XGBOOST):
        return True
    return type(estimator).__name__ in _SKLEARN_TREE_CLASSES


def output_space_for(estimator, *, is_classifier: bool) -> str:
    if not is_classifier:
        return OutputSpace.RAW
    if type(estimator).__name__ in _PROBABILITY_TREE_CLASSES:
        return OutputSpace.PROBABILITY
    return OutputSpace.LOG_ODDS


def model_output(estimator, frame: pd.DataFrame, *, output_space: str) -> np.ndarray:
    """The model's own output for `frame`, in the space its SHAP values add up in."""
    framework = detect_framework(estimator)
    if output_space == OutputSpace.RAW and framework == Framework.SCIKIT_LEARN:
        return np.asarray(estimator.predict(frame), dtype=float)
    if framework == Framework.LIGHTGBM:
        return np.asarray(estimator.predict(frame, raw_score=True), dtype=float)
    if framework == Framework.XGBOOST:
        return np.asarray(estimator.predict(frame, output_margin=True), dtype=float)
    if output_space == OutputSpace.PROBABILITY:
        return np.asarray(estimator.predict_proba(frame), dtype=float)[:, -1]
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(frame), dtype=float)
    probability = np.clip(
        np.asarray(estimator.predict_proba(frame), dtype=float)[:, -1], 1e-15, 1 - 1e-15
    )
    return np.log(probability / (1 - probability))


@dataclass
class Attribution:
    """SHAP values of one row, in the model version's output space."""

    base_value: float
    values: list[float]
    output: float


class ModelExplainer:
    """A loaded model and its SHAP explainer, built once and reused."""

    def __init__(self, model_version: ModelVersion):
        self.output_space = model_version.output_space
        self.feature_names = model_version.feature_names
        self.estimator = load_estimator(model_version)
        if is_tree_model(self.estimator):
            import shap

            self.explainer = shap.TreeExplainer(self.estimator)
            self.is_tree = True
        else:
            self.explainer = self._background_explainer(model_version)
            self.is_tree = False

    def _output(self, rows) -> np.ndarray:
        frame = pd.DataFrame(np.asarray(rows, dtype=float), columns=self.feature_names)
        return model_output(self.estimator, frame, output_space=self.output_space)

    def _background_explainer(self, model_version: ModelVersion):
        import shap

        background = load_background(model_version)
        rows = self._background_rows(background)
        sample = shap.sample(background, rows, random_state=0)
        masker = shap.maskers.Independent(sample, max_samples=rows)
        return shap.Explainer(self._output, masker, feature_names=self.feature_names)

    def _background_rows(self, background: pd.DataFrame) -> int:
        """As many background rows (10-100) as fit in EXPLAINER_MAX_SECONDS.

        One explanation evaluates the model on about 2**F masked copies of the
        background (exact) or 10*(2F+1) (permutation, above 10 features); one
        timed call on the background gives the cost of a row.
        """
        rows = min(BACKGROUND_MAX_ROWS, len(background))
        count = len(self.feature_names)
        evaluations = 2**count if count <= 10 else 10 * (2 * count + 1)
        started = time.perf_counter()
        self._output(background.iloc[:rows].to_numpy())
        seconds_per_row = max((time.perf_counter() - started) / rows, 1e-7)
        affordable = settings.EXPLAINER_MAX_SECONDS / (evaluations * seconds_per_row)
        return max(min(rows, BACKGROUND_MIN_ROWS), min(rows, int(affordable)))

    def frame(self, features: dict) -> pd.DataFrame:
        """One row in schema order; a missing (null) value is NaN for the model."""
        row = [
            math.nan if features.get(name) is None else float(features[name])
            for name in self.feature_names
        ]
        return pd.DataFrame([row], columns=self.feature_names, dtype=float)

    def explain(self, features: dict) -> Attribution:
        frame = self.frame(features)
        if not self.is_tree:
            missing = [name for name in frame.columns if frame[name].isna().any()]
            if missing:
                raise MissingValuesNotExplainable(
                    f"This model cannot take missing values, so this prediction "
                    f"cannot be explained: {', '.join(missing)} is null.",
                    fields={name: ["null"] for name in missing},
                )
        output = float(
            model_output(self.estimator, frame, output_space=self.output_space)[0]
        )
        if self.is_tree:
            with warnings.catch_warnings():
                # LightGBM binary output-format notice; _positive_class handles both.
                warnings.filterwarnings("ignore", "LightGBM binary classifier")
                values = self.explainer.shap_values(frame)
            base = self.explainer.expected_value
        else:
            result = self.explainer(frame.to_numpy())
            values, base = result.values, result.base_values
        values = _positive_class(values)
        base = float(np.ravel(np.asarray(base, dtype=float))[-1])
        return Attribution(
            base_value=base, values=[float(v) for v in values], output=output
        )


def _positive_class(values) -> np.ndarray:
    """SHAP values of the one row for the single output (the positive class)."""
    if isinstance(values, list):
        values = values[-1]
    values = np.asarray(values, dtype=float)
    if values.ndim == 3:
        values = values[..., -1]
    return values.reshape(-1)


def artifact_path(relative: str) -> Path:
    return Path(settings.MODEL_ARTIFACT_DIR) / relative


def load_estimator(model_version: ModelVersion):
    path = artifact_path(model_version.artifact)
    if not path.exists():
        raise ArtifactError(f"The artifact of {model_version} is missing ({path}).")
    if sha256_of(path) != model_version.artifact_sha256:
        raise ArtifactError(
            f"The artifact of {model_version} changed since it was registered."
        )
    return joblib.load(path)


def load_background(model_version: ModelVersion) -> pd.DataFrame:
    if not model_version.background:
        raise ArtifactError(f"{model_version} has no background data.")
    path = artifact_path(model_version.background)
    if not path.exists() or sha256_of(path) != model_version.background_sha256:
        raise ArtifactError(
            f"The background data of {model_version} is missing or changed."
        )
    return pd.read_csv(path)[model_version.feature_names].astype(float)


_explainers: dict[tuple, ModelExplainer] = {}
_explainers_lock = threading.Lock()


def explainer_for(model_version: ModelVersion) -> ModelExplainer:
    """The process's explainer for this model version, built on first use."""
    key = (
        model_version.pk,
        model_version.artifact_sha256,
        model_version.background_sha256,
    )
    explainer = _explainers.get(key)
    if explainer is not None:
        return explainer
    with _explainers_lock:
        explainer = _explainers.get(key)
        if explainer is None:
            explainer = ModelExplainer(model_version)
            _explainers[key] = explainer
    return explainer


def forget_explainers() -> None:
    with _explainers_lock:
        _explainers.clear()
