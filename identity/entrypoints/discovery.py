"""Start-up discovery of the configured OpenID Connect providers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from identity.adapters.oidc.provider import DiscoveryConfigurationError, OidcIdentityProvider
from identity.application.external_sign_in import ConfiguredProvider
from identity.domain.errors import ProviderUnavailableError
from identity.entrypoints.settings import Settings, SettingsError, env_name, oidc_env_name

log = logging.getLogger("identity.server")


async def discover_providers(
    settings: Settings, providers: Mapping[str, ConfiguredProvider]
) -> None:
    """Fetch each deployment-configured OIDC provider's metadata, all at once.

    Raises ``SettingsError`` naming the discovery URL variable when the URL can
    never work. A provider that is down is logged and left to be discovered on
    first use: its own sign-ins answer 503 meanwhile, the others are unaffected.
    """
    named = [
        (oidc.name, oidc_env_name(oidc.name, "discovery_url")) for oidc in settings.oidc_providers
    ]
    if settings.policy.google_client_id:
        named.insert(0, ("google", env_name("google_discovery_url")))
    checks = [
        (name, variable, adapter)
        for name, variable in named
        if isinstance(adapter := providers[name].adapter, OidcIdentityProvider)
    ]
    results = await asyncio.gather(
        *(adapter.discover() for _, _, adapter in checks), return_exceptions=True
    )
    for (name, variable, _), result in zip(checks, results, strict=True):
        if isinstance(result, DiscoveryConfigurationError):
            raise SettingsError(f"{variable}: discovery failed: {result}")
        if isinstance(result, ProviderUnavailableError):
            log.warning(
                "identity provider unavailable at start; its sign-ins answer 503 until it is back",
                extra={"provider": name},
            )
        elif isinstance(result, BaseException):
            raise result
