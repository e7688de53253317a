"""Tiny models trained once per session (200 rows, 5 features, 20 trees) and
fixtures that register them into a per-test artifact directory."""

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from explanations import explainers, services

FEATURES = [
    {"name": "tenure_months", "label": "Tenure", "unit": "months"},
    {"name": "visits_last_week", "label": "Visits last week"},
    {"name": "age", "label": "Age", "unit": "years", "sensitive": True},
    {
        "name": "sex_female",
        "label": "Sex",
        "value_labels": {"1": "female", "0": "male"},
        "sensitive": True,
    },
    {"name": "spend", "label": "Spend", "unit": "SGD"},
]
FEATURE_NAMES = [feature["name"] for feature in FEATURES]
ROW = {
    "tenure_months": 2,
    "visits_last_week": 12,
    "age": 41,
    "sex_female": 1,
    "spend": 35.5,
}


def _training_data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    generator = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "tenure_months": generator.integers(0, 60, 200).astype(float),
            "visits_last_week": generator.integers(0, 20, 200).astype(float),
            "age": generator.integers(18, 80, 200).astype(float),
            "sex_female": generator.integers(0, 2, 200).astype(float),
            "spend": generator.normal(50, 15, 200),
        }
    )
    score = (
        -0.05 * frame["tenure_months"]
        + 0.2 * frame["visits_last_week"]
        + 0.8 * frame["sex_female"]
        + 0.01 * frame["spend"]
        + generator.normal(0, 0.5, 200)
    )
    labels = (score > score.median()).astype(int).to_numpy()
    return frame, labels, score.to_numpy()


def _train(kind: str, frame, labels, target):
    import lightgbm
    import xgboost
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression

    if kind == "lightgbm-classifier":
        model = lightgbm.LGBMClassifier(
            n_estimators=20, num_leaves=7, min_child_samples=5, verbose=-1
        )
        return model.fit(frame, labels)
    if kind == "lightgbm-regressor":
        model = lightgbm.LGBMRegressor(
            n_estimators=20, num_leaves=7, min_child_samples=5, verbose=-1
        )
        return model.fit(frame, target)
    if kind == "xgboost-classifier":
        model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1)
        return model.fit(frame, labels)
    if kind == "xgboost-regressor":
        model = xgboost.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1)
        return model.fit(frame, target)
    if kind == "sklearn-classifier":
        return GradientBoostingClassifier(n_estimators=20, max_depth=2).fit(
            frame, labels
        )
    if kind == "sklearn-regressor":
        return RandomForestRegressor(n_estimators=20, max_depth=4, random_state=0).fit(
            frame, target
        )
    if kind == "sklearn-logistic":
        return LogisticRegression(max_iter=500).fit(frame, labels)
    raise ValueError(kind)


TREE_KINDS = [
    "lightgbm-classifier",
    "lightgbm-regressor",
    "xgboost-classifier",
    "xgboost-regressor",
    "sklearn-classifier",
    "sklearn-regressor",
]


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict:
    """{kind: joblib path} plus "features" (FEATURES.json) and "background" (CSV)."""
    directory = tmp_path_factory.mktemp("trained-models")
    frame, labels, target = _training_data()
    files = {}
    for kind in [*TREE_KINDS, "sklearn-logistic"]:
        path = directory / f"{kind}.joblib"
        joblib.dump(_train(kind, frame, labels, target), path)
        files[kind] = path
    files["features"] = directory / "FEATURES.json"
    files["features"].write_text(json.dumps({"features": FEATURES}))
    files["background"] = directory / "background.csv"
    frame.to_csv(files["background"], index=False)
    return files


@pytest.fixture
def artifact_dir(settings, tmp_path):
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    explainers.forget_explainers()
    yield settings.MODEL_ARTIFACT_DIR
    explainers.forget_explainers()


@pytest.fixture
def register(db, artifact_dir, model_files):
    """`register(kind, name=..., version="1")`: a registered, active model version."""

    def _register(kind: str, *, name: str | None = None, version: str = "1", **extra):
        extra.setdefault("features_path", model_files["features"])
        if kind == "sklearn-logistic":
            extra.setdefault("background_path", model_files["background"])
        return services.register_model(
            name=name or kind.replace("-", "_"),
            version=version,
            artifact_path=model_files[kind],
            activate=True,
            **extra,
        )

    return _register


def prediction_body(model_version, prediction_id: str = "p-1", **overrides) -> dict:
    body = {
        "prediction_id": prediction_id,
        "model": model_version.name,
        "model_version": model_version.version,
        "customer_id": "c-123",
        "features": dict(ROW),
        "output": 0.42,
    }
    body.update(overrides)
    return body


def inked_fraction(png: bytes) -> float:
    """The share of a PNG's pixels that are drawn (darker than a light grey): a blank
    canvas is a valid PNG too."""
    from io import BytesIO

    from matplotlib import image

    pixels = image.imread(BytesIO(png), format="png")
    return float((pixels[:, :, :3].min(axis=2) < 0.8).mean())


@pytest.fixture
def precompute_worker(request, monkeypatch, settings, artifact_dir):
    """A real Celery worker (tests/conftest.py) that reads this test's artifacts,
    with EXPLANATION_PRECOMPUTE on and new tasks sent to its queue.

    Returns the queue name. Needs the services pass (PostgreSQL + Redis).
    """
    from opsconsole.celery import app

    monkeypatch.setenv("MODEL_ARTIFACT_DIR", str(artifact_dir))
    queue = request.getfixturevalue("celery_worker")
    default_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    settings.EXPLANATION_PRECOMPUTE = True
    yield queue
    app.conf.task_default_queue = default_queue
