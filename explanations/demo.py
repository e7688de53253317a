"""The demo's purchase-propensity model: generated data, a small LightGBM, logged
predictions for the demo customers.

Everything is derived from fixed seeds, so every run trains the same model on the
same rows and logs the same predictions (same ids, same bodies): re-running the
demo reuses the registered version and logging is idempotent by prediction id.
"""

import json
import math
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from django.contrib.auth.models import AbstractBaseUser

from . import explainers, services
from .models import ModelVersion

MODEL_NAME = "purchase-propensity"
MODEL_VERSION = "1"
SEED = 2026
TRAINING_ROWS = 6_000
TREES = 120
CUSTOMERS = 60
PREDICTIONS_PER_CUSTOMER = 5
PREDICTION_DAYS = 30

AGE_BANDS = {"1": "18-24", "2": "25-34", "3": "35-44", "4": "45-54", "5": "55+"}
FEATURES = [
    {
        "name": "tenure_months",
        "label": "Tenure",
        "description": "How long the customer has had an account.",
        "unit": "months",
    },
    {
        "name": "visits_last_30d",
        "label": "Visits in the last 30 days",
        "description": "Sessions on the site or app in the last 30 days.",
        "unit": "visits",
    },
    {
        "name": "days_since_last_order",
        "label": "Days since last order",
        "description": "Missing when the customer has never ordered.",
        "unit": "days",
    },
    {
        "name": "category_affinity",
        "label": "Category affinity",
        "description": "Share of the customer's recent views in the item's "
        "category (0 to 1).",
    },
    {
        "name": "price",
        "label": "Price",
        "description": "The item's current price.",
        "unit": "SGD",
    },
    {
        "name": "discount_pct",
        "label": "Discount",
        "description": "Discount on the list price shown to the customer.",
        "unit": "%",
    },
    {
        "name": "item_age_days",
        "label": "Item age",
        "description": "Days since the item was added to the catalog.",
        "unit": "days",
    },
    {
        "name": "item_rating",
        "label": "Item rating",
        "description": "Average review rating of the item (1 to 5 stars).",
        "unit": "stars",
    },
    {
        "name": "mobile_app",
        "label": "Device",
        "description": "Whether the customer was on the mobile app or the web.",
        "value_labels": {"1": "mobile app", "0": "web"},
    },
    {
        "name": "age_band",
        "label": "Age band",
        "description": "Self-declared age band; never shown to customers.",
        "value_labels": AGE_BANDS,
        "sensitive": True,
    },
]
FEATURE_NAMES = [feature["name"] for feature in FEATURES]


def demo_customer_id(number: int) -> str:
    """`cust-0001`...: the ids the demo uses for customers across apps."""
    return f"cust-{number:04d}"


def _customers(generator: np.random.Generator, count: int) -> pd.DataFrame:
    """Who the customer is: the same for every item they are scored on."""
    tenure = np.round(generator.gamma(2.0, 14.0, count)).clip(0, 180)
    visits = generator.poisson(3 + tenure / 12).clip(0, 60).astype(float)
    has_ordered = generator.random(count) < np.clip(0.3 + tenure / 40, 0, 0.95)
    days_since_order = np.where(
        has_ordered,
        np.round(generator.exponential(25 + 40 / (1 + visits))).clip(0, 365),
        np.nan,
    )
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "visits_last_30d": visits,
            "days_since_last_order": days_since_order,
            "mobile_app": (generator.random(count) < 0.55).astype(float),
            "age_band": generator.choice(
                [1.0, 2.0, 3.0, 4.0, 5.0], count, p=[0.14, 0.3, 0.26, 0.18, 0.12]
            ),
        }
    )


def _items(generator: np.random.Generator, count: int) -> pd.DataFrame:
    """The item and how it was offered: different for every prediction."""
    return pd.DataFrame(
        {
            "category_affinity": np.round(generator.beta(1.2, 3.5, count), 3),
            "price": np.round(np.exp(generator.normal(3.4, 0.8, count)), 2).clip(
                2, 900
            ),
            "discount_pct": np.where(
                generator.random(count) < 0.35,
                generator.choice([5.0, 10.0, 15.0, 20.0, 30.0, 50.0], count),
                0.0,
            ),
            "item_age_days": np.round(generator.exponential(180, count)).clip(0, 1500),
            "item_rating": np.round(generator.normal(4.1, 0.5, count), 1).clip(1, 5),
        }
    )


def generate_rows(count: int, *, seed: int = SEED) -> pd.DataFrame:
    """`count` plausible (customer, item) rows in schema order; same seed, same rows."""
    generator = np.random.default_rng(seed)
    frame = pd.concat([_customers(generator, count), _items(generator, count)], axis=1)
    return frame[FEATURE_NAMES].astype(float)


def purchase_log_odds(frame: pd.DataFrame) -> np.ndarray:
    """The generating truth: engaged, loyal customers buy cheap, discounted, new,
    well-rated items in categories they like."""
    days = frame["days_since_last_order"]
    return (
        -2.2
        + 2.8 * (frame["category_affinity"] - 0.25)
        + 0.05 * frame["visits_last_30d"].clip(upper=25)
        + 0.35 * np.log1p(frame["tenure_months"]) / np.log(13)
        - 0.75 * np.log(frame["price"] / 30)
        + 0.03 * frame["discount_pct"]
        - 0.0025 * frame["item_age_days"].clip(upper=400)
        + 0.6 * (frame["item_rating"] - 4.0)
        + np.where(days.isna(), -0.4, -0.008 * days.fillna(0).clip(upper=120))
        + 0.25 * frame["mobile_app"]
        - 0.08 * (frame["age_band"] - 3)
    ).to_numpy()


def training_data(
    *, rows: int = TRAINING_ROWS, seed: int = SEED
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows and purchase labels (1 = bought), both deterministic."""
    frame = generate_rows(rows, seed=seed)
    generator = np.random.default_rng(seed + 1)
    probability = 1 / (1 + np.exp(-purchase_log_odds(frame)))
    labels = (generator.random(rows) < probability).astype(int)
    return frame, labels


def train(frame: pd.DataFrame, labels: np.ndarray):
    """A small LightGBM classifier; one thread and fixed seeds, so it is the same
    model every time."""
    import lightgbm

    model = lightgbm.LGBMClassifier(
        n_estimators=TREES,
        num_leaves=15,
        learning_rate=0.05,
        min_child_samples=40,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.9,
        random_state=SEED,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )
    return model.fit(frame, labels)


def prediction_records(model, *, anchor) -> list[dict]:
    """The demo's logged predictions: each demo customer scored on a few items over
    the 30 days before `anchor` (when the model was registered), ids stable."""
    count = CUSTOMERS * PREDICTIONS_PER_CUSTOMER
    generator = np.random.default_rng(SEED + 2)
    customers = _customers(generator, CUSTOMERS)
    customer_of = generator.permutation(
        np.repeat(np.arange(CUSTOMERS), PREDICTIONS_PER_CUSTOMER)
    )
    frame = pd.concat(
        [customers.loc[customer_of].reset_index(drop=True), _items(generator, count)],
        axis=1,
    )[FEATURE_NAMES].astype(float)
    probabilities = model.predict_proba(frame)[:, 1]
    # Oldest first, so ids grow with time.
    minutes_before = np.sort(generator.integers(5, PREDICTION_DAYS * 24 * 60, count))
    minutes_before = minutes_before[::-1]
    records = []
    for index, (row, probability) in enumerate(
        zip(frame.to_dict("records"), probabilities, strict=True)
    ):
        created_at = anchor - timedelta(minutes=int(minutes_before[index]))
        records.append(
            {
                "prediction_id": f"pred-demo-{index + 1:04d}",
                "model": MODEL_NAME,
                "model_version": MODEL_VERSION,
                "customer_id": demo_customer_id(int(customer_of[index]) + 1),
                "features": {
                    name: None if math.isnan(value) else value
                    for name, value in row.items()
                },
                "output": round(float(probability), 6),
                "created_at": created_at.isoformat(),
            }
        )
    return records


def _register(admin: AbstractBaseUser | None):
    """Train and register the model as the register_model command would."""
    import joblib

    model = train(*training_data())
    with tempfile.TemporaryDirectory(prefix="opsconsole-demo-") as directory:
        artifact = Path(directory) / f"{MODEL_NAME}.joblib"
        features = Path(directory) / "FEATURES.json"
        joblib.dump(model, artifact)
        features.write_text(json.dumps({"features": FEATURES}, indent=2))
        model_version = services.register_model(
            name=MODEL_NAME,
            version=MODEL_VERSION,
            artifact_path=artifact,
            features_path=features,
            activate=True,
            actor=admin,
        )
    return model_version, model


def load(*, admin: AbstractBaseUser | None) -> list[str]:
    """Register the demo model (once) and log its predictions; returns what was
    done."""
    done = []
    model_version = ModelVersion.objects.filter(
        name=MODEL_NAME, version=MODEL_VERSION
    ).first()
    if model_version is None:
        model_version, model = _register(admin)
        done.append(
            f"explanations: {model_version} registered and active (LightGBM, "
            f"{TREES} trees, {len(FEATURES)} features, trained on "
            f"{TRAINING_ROWS:,} generated rows)"
        )
    else:
        try:
            model = explainers.load_estimator(model_version)
        except explainers.ArtifactError as error:
            done.append(f"explanations: {model_version} is registered, but {error}")
            return done
        done.append(f"explanations: {model_version} already registered, reused")
    anchor = model_version.registered_at.replace(second=0, microsecond=0)
    records = prediction_records(model, anchor=anchor)
    results = services.log_predictions(records=records)
    created = sum(result.created for result in results)
    done.append(
        f"predictions: {created} logged, {len(results) - created} already there, "
        f"for {CUSTOMERS} customers ({demo_customer_id(1)} to "
        f"{demo_customer_id(CUSTOMERS)}); try {records[-1]['prediction_id']} or "
        f"customer {records[-1]['customer_id']} on the Explanations page"
    )
    return done
