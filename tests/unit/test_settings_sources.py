"""Settings from the environment, ``*_FILE`` variables and a secrets directory (core.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.akool.settings import AkoolSettings
from adapters.zegocloud.settings import ZegocloudSettings
from core.settings import SECRETS_DIR_VARIABLE, SettingsFileError
from gateway.config import Settings

pytestmark = pytest.mark.unit

SECRET = "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AVATAR_GATEWAY_"):
            monkeypatch.delenv(name)


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def test_variable_file_is_read_and_its_newline_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s").write_text("from-a-file\n")
    monkeypatch.setenv(f"{SECRET}_FILE", str(tmp_path / "s"))
    monkeypatch.setenv("AVATAR_GATEWAY_ZEGOCLOUD__APP_ID", "42")
    zego = ZegocloudSettings()
    assert secret(zego.server_secret) == "from-a-file"
    assert zego.app_id == 42 and zego.configured


def test_variable_and_its_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s").write_text("a")
    monkeypatch.setenv(f"{SECRET}_FILE", str(tmp_path / "s"))
    monkeypatch.setenv(SECRET, "b")
    with pytest.raises(SettingsFileError, match=f"both {SECRET} and {SECRET}_FILE"):
        ZegocloudSettings()


def test_unreadable_file_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{SECRET}_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsFileError, match=f"{SECRET}_FILE=.*cannot be read"):
        ZegocloudSettings()


def test_secrets_directory_as_kubernetes_mounts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Secret volume: files are symlinks into a timestamped ..data directory.
    data = tmp_path / "..2026_12_06" / "x"
    data.parent.mkdir()
    (data.parent / SECRET).write_text("mounted\n")
    (data.parent / "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID").write_text("7")
    (data.parent / "AVATAR_GATEWAY_REDIS_URL").write_text("redis://r:6379/0")
    (tmp_path / "..data").symlink_to(data.parent.name)
    for name in (SECRET, "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID", "AVATAR_GATEWAY_REDIS_URL"):
        (tmp_path / name).symlink_to(Path("..data") / name)
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path))
    zego = ZegocloudSettings()
    assert secret(zego.server_secret) == "mounted" and zego.app_id == 7
    assert Settings().redis_url == "redis://r:6379/0"
    # The environment wins over the directory.
    monkeypatch.setenv("AVATAR_GATEWAY_ZEGOCLOUD__APP_ID", "8")
    assert ZegocloudSettings().app_id == 8


def test_missing_secrets_directory_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path / "not-mounted"))
    with pytest.raises(SettingsFileError, match="not a readable directory"):
        Settings()


def test_credential_sets_and_their_words(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AkoolSettings.required_variables() == (
        "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL, AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY, "
        "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET and either AVATAR_GATEWAY_AKOOL__API_KEY or "
        "AVATAR_GATEWAY_AKOOL__CLIENT_ID with AVATAR_GATEWAY_AKOOL__CLIENT_SECRET"
    )
    assert ZegocloudSettings.required_variables() == (
        "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID and AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET"
    )
    monkeypatch.setenv("AVATAR_GATEWAY_AKOOL__API_KEY", "k")
    akool = AkoolSettings()
    assert not akool.configured and akool.partially_configured
    for name, value in (
        ("LIVEKIT_URL", "ws://lk"),
        ("LIVEKIT_API_KEY", "a"),
        ("LIVEKIT_API_SECRET", "s"),
    ):
        monkeypatch.setenv(f"AVATAR_GATEWAY_AKOOL__{name}", value)
    akool = AkoolSettings()
    assert akool.configured and not akool.partially_configured
    assert akool.endpoints() == {"api_url": "https://openapi.akool.com", "livekit_url": "ws://lk"}
    assert not ZegocloudSettings().configured and not ZegocloudSettings().partially_configured


def test_listens_on_every_interface_by_default() -> None:
    settings = Settings()
    assert settings.listen == "0.0.0.0:50051" and settings.ops_listen == "0.0.0.0:8081"
    assert settings.sandbox is False
