"""factory_boy factories; users get their role through the real groups."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from overrides import services
from overrides.models import CatalogItem

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get(name=extracted))
            if extracted == "admin":
                self.is_staff = True
        self.save()


class CatalogItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogItem

    item_id = factory.Sequence(lambda n: f"sku-{n:05d}")
    title = factory.Faker("catch_phrase")
    category = "Garden"


def make_block(actor, item_id="sku-1", surface=None, region=None, **kwargs):
    """A block made through the real service, as the UI and API make them."""
    return services.block_item(
        item_id=item_id,
        surface=surface,
        region=region,
        reason=kwargs.pop("reason", "Unsafe product"),
        actor=actor,
        **kwargs,
    )


def make_boost(actor, item_id="sku-2", factor=2.0, surface=None, region=None, **kwargs):
    ends_at = kwargs.pop("ends_at", timezone.now() + timedelta(days=14))
    return services.boost_create(
        item_id=item_id,
        factor=factor,
        surface=surface,
        region=region,
        reason=kwargs.pop("reason", "Cold start"),
        actor=actor,
        ends_at=ends_at,
        **kwargs,
    )
