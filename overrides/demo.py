"""Deterministic demo data for the overrides: a catalog and a few blocks and boosts."""

import random
from datetime import timedelta

from django.utils import timezone

from . import services
from .models import Block, CatalogItem

CATEGORIES = {
    "Garden": (
        ["Folding", "Teak", "Solar", "Hanging", "Raised"],
        ["Chair", "Lantern", "Planter", "Hose Reel", "Bird Feeder"],
    ),
    "Kitchen": (
        ["Cast-Iron", "Ceramic", "Bamboo", "Non-Stick", "Copper"],
        ["Skillet", "Mixing Bowl", "Cutting Board", "Kettle", "Spice Rack"],
    ),
    "Toys": (
        ["Wooden", "Magnetic", "Plush", "Remote-Control", "Glow"],
        ["Train Set", "Building Blocks", "Bear", "Racing Car", "Puzzle"],
    ),
    "Electronics": (
        ["Wireless", "Noise-Cancelling", "Smart", "Portable", "4K"],
        ["Earbuds", "Speaker", "Power Bank", "Webcam", "Monitor"],
    ),
    "Beauty": (
        ["Organic", "Hydrating", "Vitamin C", "Matte", "Travel"],
        ["Serum", "Face Mask", "Lip Balm", "Hair Oil", "Sunscreen"],
    ),
    "Sports": (
        ["Adjustable", "Foldable", "Carbon", "Insulated", "Anti-Slip"],
        ["Dumbbell", "Yoga Mat", "Water Bottle", "Jump Rope", "Bike Helmet"],
    ),
    "Pets": (
        ["Orthopedic", "Chew-Proof", "Automatic", "Self-Cleaning", "Reflective"],
        ["Dog Bed", "Cat Tree", "Feeder", "Litter Box", "Leash"],
    ),
    "Home": (
        ["Linen", "Blackout", "Memory Foam", "Scented", "Velvet"],
        ["Curtains", "Pillow", "Throw Blanket", "Candle", "Rug"],
    ),
}
VARIANTS = ["Small", "Large", "Blue", "Green", "Set of 2", "XL", "Sand"]
CATALOG_SIZE = 320


def catalog_rows(seed: int = 2026) -> list[dict]:
    """The same few hundred plausible products on every run."""
    rng = random.Random(seed)
    base = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)
    rows = []
    categories = sorted(CATEGORIES)
    for index in range(CATALOG_SIZE):
        category = categories[index % len(categories)]
        adjectives, nouns = CATEGORIES[category]
        title = f"{rng.choice(adjectives)} {rng.choice(nouns)}"
        if rng.random() < 0.5:
            title += f" — {rng.choice(VARIANTS)}"
        rows.append(
            {
                "item_id": f"sku-{10001 + index}",
                "title": title,
                "category": category,
                "created": base - timedelta(days=rng.randint(0, 720)),
            }
        )
    return rows


def load(*, agent, manager) -> list[str]:
    """Load the catalog, and rules if there are none yet; returns what was done."""
    done = []
    result = services.import_catalog(rows=catalog_rows())
    done.append(f"catalog: {result.created} created, {result.updated} updated")
    if Block.objects.exists():
        done.append("rules: already present, left as they are")
        return done
    now = timezone.now()
    services.block_item(
        item_id="sku-10007",
        surface="home",
        region="SA",
        actor=agent,
        reason="Alcohol-related product recommended on the home page in Saudi "
        "Arabia (ticket SUP-4411).",
    )
    services.block_item(
        item_id="sku-10042",
        surface=None,
        region=None,
        actor=agent,
        reason="Product recall RC-2291: choking hazard. Remove everywhere.",
    )
    services.block_item(
        item_id="sku-10123",
        surface="email",
        region=None,
        actor=agent,
        expires_at=now + timedelta(days=7),
        reason="Supplier dispute: pause e-mail promotion for a week (ticket SUP-4502).",
    )
    services.block_item(
        item_id="sku-10200",
        surface="search",
        region="DE",
        actor=agent,
        starts_at=now + timedelta(days=2),
        reason="Not licensed for sale in Germany from next month (legal LGL-88).",
    )
    lifted = services.block_item(
        item_id="sku-10077",
        surface="home",
        region=None,
        actor=agent,
        reason="Customer complaint: misleading picture (ticket SUP-4390).",
    )
    services.lift_block(
        block_id=lifted.pk,
        actor=agent,
        reason="Seller fixed the picture; checked by QA.",
    )
    services.boost_create(
        item_id="sku-10250",
        factor=2.0,
        surface="search",
        region=None,
        actor=manager,
        ends_at=now + timedelta(days=14),
        reason="New product launch: cold start on search (AM-301).",
    )
    services.boost_create(
        item_id="sku-10251",
        factor=1.5,
        surface="home",
        region="SG",
        actor=manager,
        ends_at=now + timedelta(hours=30),
        reason="Singapore weekend campaign (AM-318).",
    )
    services.boost_create(
        item_id="sku-10252",
        factor=3.0,
        surface="email",
        region=None,
        actor=manager,
        starts_at=now + timedelta(days=3),
        ends_at=now + timedelta(days=10),
        reason="Holiday newsletter feature (AM-322).",
    )
    ended = services.boost_create(
        item_id="sku-10260",
        factor=1.8,
        surface=None,
        region="GB",
        actor=manager,
        ends_at=now + timedelta(days=20),
        reason="UK launch support (AM-290).",
    )
    services.end_boost(
        boost_id=ended.pk, actor=manager, reason="Stock ran out; stop sending traffic."
    )
    done.append(
        "rules: 5 blocks (1 lifted) and 4 boosts (1 ended); "
        f"{CatalogItem.objects.count()} catalog items"
    )
    return done
