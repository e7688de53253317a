"""Project-level promises: roles, health probes, production checks, commands, errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from overrides.models import Block, Boost, CatalogItem

ROOT = Path(__file__).resolve().parent.parent


def test_roles__created_by_migration_with_their_permissions(db):
    def perms(role):
        group = Group.objects.get(name=role)
        return {
            f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()
        }

    assert {"overrides.add_block", "overrides.change_block"} <= perms("support_agent")
    assert "overrides.add_boost" not in perms("support_agent")
    assert {
        "overrides.add_boost",
        "overrides.change_boost",
        "overrides.view_block",
    } <= perms("account_manager")
    assert "overrides.add_block" not in perms("account_manager")
    officer = perms("privacy_officer")
    assert not any(p.endswith(("_block", "_boost")) for p in officer)
    assert {
        "overrides.add_optout",
        "overrides.change_optout",
        "privacy.view_deletionrequest",
        "privacy.change_downstream",
    } <= officer
    assert {"overrides.add_optout", "privacy.add_deletionrequest"} <= perms(
        "support_agent"
    )
    assert "privacy.view_deletionrequest" not in perms("support_agent")
    assert perms("admin") == {
        f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.all()
    }


def test_healthz__no_auth__200(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz__database_up__200(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] is True


def test_readyz__redis_configured_but_down__503(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": True, "redis": False}


def _manage(*args, **env):
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy__production_settings__no_warning(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="x7Rk2pVq9LmZ4tYw8NcB3hJd6FsQ1aGe5UoXiTlKvMnCbWyRzPq",
        ALLOWED_HOSTS="console.example.com",
        CUSTOMER_ID_HMAC_KEY="a" * 64,
        CUSTOMER_ID_ENCRYPTION_KEY="b" * 64,
        OPSCONSOLE_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_settings__production_without_secret_key__refuses_to_start(tmp_path):
    result = _manage(
        "check", DEBUG="0", SECRET_KEY="", OPSCONSOLE_VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_api_unknown_path__json_404_in_contract_format(client, db):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_page_unknown_path__helpful_404_page(client, db, agent):
    client.force_login(agent)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Back to the dashboard" in response.content.decode()


def test_load_demo__users_per_role_catalog_and_rules__idempotent(
    db, capsys, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    call_command("load_demo")
    call_command("load_demo")
    output = capsys.readouterr().out
    assert "agent" in output and "role: privacy_officer" in output
    assert CatalogItem.objects.count() >= 300
    assert Block.objects.count() == 5 and Boost.objects.count() == 4


def test_import_catalog__csv__creates_then_updates(db, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,title,category,created\nsku-1,Chair,Garden,2026-01-05\n")
    call_command("import_catalog", str(path))
    path.write_text(
        "item_id,title,category\nsku-1,Teak Chair,Garden\nsku-2,Lamp,Home\n"
    )
    call_command("import_catalog", str(path))
    assert dict(CatalogItem.objects.values_list("item_id", "title")) == {
        "sku-1": "Teak Chair",
        "sku-2": "Lamp",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"item_id,title\nsku 1,Chair\nsku-2,Lamp\n", "whitespace"),
        (b"item_id,title\n\xff\xfe,Chair\n", "not UTF-8"),
        (b"id,name\nsku-1,Chair\n", "must have item_id and title"),
        (b"item_id,title,created\nsku-1,Chair,yesterday\n", "not an ISO 8601"),
    ],
)
def test_import_catalog__bad_file__clear_error_and_nothing_written(
    db, tmp_path, content, message
):
    path = tmp_path / "catalog.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_catalog", str(path))
    assert not CatalogItem.objects.exists()
