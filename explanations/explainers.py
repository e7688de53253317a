"""SHAP for registered models: one explainer per model version per process.

Tree models (LightGBM, XGBoost, scikit-learn forests and boosting) are explained
with exact TreeSHAP in the model's raw output (margin: log odds for binary
classifiers, the prediction for regressors; probability for scikit-learn forests,
whose trees vote probabilities): shap's TreeExplainer, or for LightGBM the TreeSHAP
built into LightGBM that TreeExplainer itself calls. Other models use shap.Explainer
on their output function with a small sample of the registered background data.
EXPLAINER_MAX_SECONDS bounds one such explanation: a timed probe sizes the sample so
it normally fits, and the model is called on at most MODEL_CALL_ROWS masked rows at
a time with the deadline checked before each call, so an explanation that does not
fit is stopped within one call of the budget (ExplanationTooSlow, 503; nothing is
stored).
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
MODEL_CALL_ROWS = 2_000

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


class ExplanationTooSlow(ConsoleError):
    """A non-tree explanation ran past EXPLAINER_MAX_SECONDS and was stopped."""

    status_code = 503
    code = "explanation_too_slow"


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


def model_output(estimator, frame, *, output_space: str) -> np.ndarray:
    """The model's own output for `frame` (or an array of rows in schema order), in
    the space its SHAP values add up in."""
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
    """A loaded model and its SHAP explainer, built once and reused.

    One row is explained on one thread: it gains nothing from more, and OpenMP
    threads left spinning by each server process slow the others down. LightGBM
    is asked directly for its own TreeSHAP (`pred_contrib`, what shap's
    TreeExplainer calls for it) so the thread count can be passed; XGBoost's
    booster is set to one thread; OpenMP is limited to one for the rest.
    """

    def __init__(self, model_version: ModelVersion):
        self.output_space = model_version.output_space
        self.feature_names = model_version.feature_names
        self._deadline = threading.local()
        self.estimator = load_estimator(model_version)
        self.framework = model_version.framework
        self.is_tree = is_tree_model(self.estimator)
        self.explainer = None
        if not self.is_tree:
            self.explainer = self._background_explainer(model_version)
            return
        from threadpoolctl import ThreadpoolController

        # Selected after the model's framework is loaded, so its OpenMP is in.
        self._openmp = ThreadpoolController().select(user_api="openmp")
        if self.framework == Framework.LIGHTGBM:
            self.booster = getattr(self.estimator, "booster_", self.estimator)
            return
        import shap

        if self.framework == Framework.XGBOOST:
            booster = getattr(self.estimator, "get_booster", lambda: None)()
            if booster is not None:
                booster.set_param({"nthread": 1})
        self.explainer = shap.TreeExplainer(self.estimator)

    def _output(self, rows) -> np.ndarray:
        frame = pd.DataFrame(np.asarray(rows, dtype=float), columns=self.feature_names)
        return model_output(self.estimator, frame, output_space=self.output_space)

    def _bounded_output(self, rows) -> np.ndarray:
        """The model's output for shap's masked rows, in calls of MODEL_CALL_ROWS
        with the deadline checked before each (shap may send 2**F x background
        rows in one call)."""
        rows = np.asarray(rows, dtype=float)
        outputs = []
        for start in range(0, max(len(rows), 1), MODEL_CALL_ROWS):
            deadline = getattr(self._deadline, "at", None)
            if deadline is not None and time.perf_counter() > deadline:
                raise ExplanationTooSlow(
                    "Explaining this prediction took longer than "
                    f"EXPLAINER_MAX_SECONDS ({settings.EXPLAINER_MAX_SECONDS:g} s) "
                    "and was stopped; it needs a faster model or a larger budget."
                )
            outputs.append(self._output(rows[start : start + MODEL_CALL_ROWS]))
        return np.concatenate(outputs)

    def _background_explainer(self, model_version: ModelVersion):
        import shap

        background = load_background(model_version)
        rows = self._background_rows(background)
        sample = shap.sample(background, rows, random_state=0)
        masker = shap.maskers.Independent(sample, max_samples=rows)
        return shap.Explainer(
            self._bounded_output, masker, feature_names=self.feature_names
        )

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

    def row(self, features: dict) -> np.ndarray:
        """One row (1 x F) in schema order; a missing (null) value is NaN."""
        return np.array(
            [
                [
                    math.nan if features.get(name) is None else float(features[name])
                    for name in self.feature_names
                ]
            ],
            dtype=float,
        )

    def _row_output(self, row: np.ndarray) -> float:
        """The model's own output for one row, in its output space.

        Called on the array, not a frame: the schema's order is the model's (checked
        at registration), and building and checking a one-row frame costs more than
        scoring it. XGBoost keeps its frame (its sklearn API checks names).
        """
        if self.framework == Framework.XGBOOST:
            rows = pd.DataFrame(row, columns=self.feature_names)
        else:
            rows = row
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "X does not have valid feature names")
            return float(
                model_output(self.estimator, rows, output_space=self.output_space)[0]
            )

    def _tree_attribution(self, row: np.ndarray) -> Attribution:
        """TreeSHAP on one thread, and the model's output to check it against."""
        with self._openmp.limit(limits=1):
            if self.framework == Framework.LIGHTGBM:
                output = self.booster.predict(row, raw_score=True, num_threads=1)
                phi = self.booster.predict(row, pred_contrib=True, num_threads=1)
                values, base, output = phi[0, :-1], phi[0, -1], output[0]
            else:
                output = self._row_output(row)
                values = self.explainer.shap_values(row)
                base = self.explainer.expected_value
        return Attribution(
            base_value=float(np.ravel(np.asarray(base, dtype=float))[-1]),
            values=[float(value) for value in _positive_class(values)],
            output=float(output),
        )

    def explain(self, features: dict) -> Attribution:
        started = time.perf_counter()
        row = self.row(features)
        if self.is_tree:
            return self._tree_attribution(row)
        missing = [
            name
            for name, value in zip(self.feature_names, row[0], strict=True)
            if math.isnan(value)
        ]
        if missing:
            raise MissingValuesNotExplainable(
                f"This model cannot take missing values, so this prediction "
                f"cannot be explained: {', '.join(missing)} is null.",
                fields={name: ["null"] for name in missing},
            )
        output = self._row_output(row)
        self._deadline.at = started + settings.EXPLAINER_MAX_SECONDS
        try:
            result = self.explainer(row)
        finally:
            self._deadline.at = None
        return Attribution(
            base_value=float(np.ravel(np.asarray(result.base_values, dtype=float))[-1]),
            values=[float(value) for value in _positive_class(result.values)],
            output=output,
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
