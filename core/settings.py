"""Where settings come from: arguments, environment, ``*_FILE`` variables, a secrets directory.

Every settings model of the gateway (:class:`gateway.config.Settings` and each vendor's
:class:`core.plugin.VendorSettings`) derives from :class:`FileSettings`, so a value can be
given three ways, the first found winning:

1. the variable itself, e.g. ``AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET=...``;
2. ``<VARIABLE>_FILE``, the path of a file holding the value (the convention of the official
   database images, for Docker and Compose secrets);
3. a file named after the variable in the directory ``AVATAR_GATEWAY_SECRETS_DIR`` (a
   Kubernetes Secret whose keys are the variable names, mounted as a volume).

Files are read once at start, and trailing whitespace (the newline editors add) is dropped.
Giving both a variable and its ``_FILE`` is refused: which one wins would be a guess.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
)

SECRETS_DIR_VARIABLE = "AVATAR_GATEWAY_SECRETS_DIR"
"""Names the directory of secret files (one file per variable, named like the variable)."""


class SettingsFileError(ValueError):
    """A ``*_FILE`` variable names a file that cannot be read, or duplicates its variable."""


class FileVariablesSource(PydanticBaseSettingsSource):
    """Values from ``<PREFIX><FIELD>_FILE`` variables: each names a file holding the value.

    Only fields whose value is a plain string, number or secret are read this way (nested
    models and dicts come from the environment or from code).
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._prefix = str(settings_cls.model_config.get("env_prefix", "")).upper()
        self._environ = {k.upper(): v for k, v in os.environ.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The file's content for ``field_name``, the variable's name, and ``False`` (not JSON).

        Raises:
            SettingsFileError: the file cannot be read, or the variable is also set.
        """
        variable = f"{self._prefix}{field_name}".upper()
        path = self._environ.get(f"{variable}_FILE")
        if path is None:
            return None, variable, False
        if variable in self._environ:
            raise SettingsFileError(f"both {variable} and {variable}_FILE are set; keep one")
        try:
            return Path(path).read_text(encoding="utf-8").rstrip(), variable, False
        except OSError as exc:
            raise SettingsFileError(f"{variable}_FILE={path} cannot be read: {exc}") from exc

    def __call__(self) -> dict[str, Any]:
        """Every field given by a ``*_FILE`` variable, by field name."""
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


class FileSettings(BaseSettings):
    """Base of the gateway's settings models: adds ``*_FILE`` variables and the secrets dir.

    The order of sources is: constructor arguments, environment variables, ``*_FILE``
    variables, files in ``$AVATAR_GATEWAY_SECRETS_DIR``, defaults.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Insert the ``*_FILE`` source and the secrets directory after the environment."""
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            FileVariablesSource(settings_cls),
        ]
        secrets_dir = os.environ.get(SECRETS_DIR_VARIABLE)
        if secrets_dir:
            if not Path(secrets_dir).is_dir():
                raise SettingsFileError(
                    f"{SECRETS_DIR_VARIABLE}={secrets_dir} is not a readable directory"
                )
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        return tuple(sources)
