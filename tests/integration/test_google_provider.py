"""GoogleIdentityProvider against a real OIDC provider served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from identity.adapters.oidc.google import GoogleIdentityProvider, accepted_issuers
from identity.adapters.oidc.provider import DiscoveryConfigurationError, OidcIdentityProvider
from identity.application.pkce import new_code_verifier, new_nonce, new_state, s256_challenge
from identity.domain.errors import OAuthFailedError, ProviderUnavailableError
from identity.domain.identities import ExternalIdentity
from tests.oidc_provider import FakeOidcProvider

REDIRECT_URI = "https://app.example.com/auth/google/callback"


@pytest.fixture
async def provider() -> AsyncIterator[FakeOidcProvider]:
    async with FakeOidcProvider() as provider:
        yield provider


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def google(provider: FakeOidcProvider, session: aiohttp.ClientSession) -> GoogleIdentityProvider:
    return GoogleIdentityProvider(
        provider.discovery_url, http=session, leeway_seconds=30, timeout_seconds=2
    )


async def sign_in(
    google: OidcIdentityProvider,
    provider: FakeOidcProvider,
    *,
    verifier_override: str | None = None,
) -> ExternalIdentity:
    """The whole flow as the callback handler runs it, with a browser in the middle."""
    state, nonce, verifier = new_state(), new_nonce(), new_code_verifier()
    url = await google.authorization_url(
        provider.client,
        redirect_uri=REDIRECT_URI,
        state=state,
        nonce=nonce,
        code_challenge=s256_challenge(verifier),
    )
    callback = urlsplit(await provider.browser_authorize(url))
    query = parse_qs(callback.query)
    assert query["state"] == [state]
    return await google.exchange(
        provider.client,
        code=query["code"][0],
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier if verifier_override is None else verifier_override,
        nonce=nonce,
    )


async def test_sign_in_returns_the_identity(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    provider.next_identity(sub="google-42", email="ann@example.com", name="Ann")

    identity = await sign_in(google, provider)

    assert identity == ExternalIdentity(
        provider="google",
        subject="google-42",
        email="ann@example.com",
        email_verified=True,
        name="Ann",
    )


async def test_authorization_url_asks_for_the_code_flow_with_pkce(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    verifier = new_code_verifier()
    url = await google.authorization_url(
        provider.client,
        redirect_uri=REDIRECT_URI,
        state="the-state",
        nonce="the-nonce",
        code_challenge=s256_challenge(verifier),
    )

    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{provider.base_url}/authorize?")
    assert {k: v[0] for k, v in query.items()} == {
        "response_type": "code",
        "client_id": provider.client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
    }


async def test_metadata_and_keys_are_fetched_once(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    await sign_in(google, provider)
    await sign_in(google, provider)

    assert (provider.discovery_fetches, provider.jwks_fetches) == (1, 1)


@pytest.mark.parametrize("verified", [False, "false", "yes"])
async def test_email_is_unverified_unless_the_provider_says_true(
    google: GoogleIdentityProvider, provider: FakeOidcProvider, verified: object
) -> None:
    provider.next_identity(sub="s", email="bob@example.com", email_verified=verified)

    identity = await sign_in(google, provider)

    assert identity.email_verified is False


async def test_the_string_true_counts_as_verified(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    provider.next_identity(sub="s", email="bob@example.com", email_verified="true")

    assert (await sign_in(google, provider)).email_verified is True


async def test_identity_without_email(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    provider.next_identity(sub="s", email=None, name=None)

    identity = await sign_in(google, provider)

    assert (identity.email, identity.email_verified, identity.name) == (None, True, None)


@pytest.mark.parametrize(
    "misbehaviour",
    [
        pytest.param({"nonce": "someone-elses-nonce"}, id="wrong-nonce"),
        pytest.param({"aud": "another-client"}, id="wrong-aud"),
        pytest.param({"azp": "another-client"}, id="wrong-azp"),
        pytest.param({"iss": "https://evil.example"}, id="wrong-iss"),
        pytest.param({"expired": True}, id="expired"),
        pytest.param({"unknown_key": True}, id="unknown-key"),
        pytest.param({"alg": "none"}, id="alg-none"),
        pytest.param({"alg": "HS256"}, id="hs256-with-public-key"),
        pytest.param({"token_status": 400}, id="token-endpoint-400"),
        pytest.param({"token_body": "<html>oops</html>"}, id="token-not-json"),
        pytest.param({"token_body": '{"access_token": "a"}'}, id="no-id-token"),
        pytest.param({"token_body": '{"id_token": "not.a.jwt"}'}, id="id-token-garbage"),
        pytest.param({"token_body": '["a list"]'}, id="token-not-an-object"),
    ],
)
async def test_a_bad_answer_fails_the_sign_in(
    google: GoogleIdentityProvider, provider: FakeOidcProvider, misbehaviour: dict[str, Any]
) -> None:
    provider.misbehave(**misbehaviour)

    with pytest.raises(OAuthFailedError):
        await sign_in(google, provider)


async def test_the_same_flow_succeeds_once_the_provider_behaves(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    # Guards the parametrized failures above: they fail because of the misbehaviour.
    provider.misbehave(nonce="someone-elses-nonce")
    with pytest.raises(OAuthFailedError):
        await sign_in(google, provider)

    provider.misbehave()
    assert (await sign_in(google, provider)).subject == provider.next_identity().sub


@pytest.mark.parametrize("verifier", ["", "a-verifier-that-does-not-match-the-challenge-xyz"])
async def test_the_provider_refuses_a_wrong_code_verifier(
    google: GoogleIdentityProvider, provider: FakeOidcProvider, verifier: str
) -> None:
    with pytest.raises(OAuthFailedError):
        await sign_in(google, provider, verifier_override=verifier)


async def test_the_code_verifier_is_sent_to_the_token_endpoint(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    await sign_in(google, provider)

    (form,) = provider.token_requests
    request = provider.authorize_requests[-1]
    assert s256_challenge(form["code_verifier"]) == request.code_challenge
    assert (form["client_id"], form["client_secret"]) == (
        provider.client.client_id,
        provider.client.client_secret,
    )


async def test_a_rotated_key_is_fetched_once(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    await sign_in(google, provider)
    provider.rotate_key()

    await sign_in(google, provider)

    assert provider.jwks_fetches == 2


async def test_an_unknown_key_refetches_the_jwks_once_only(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    await sign_in(google, provider)
    provider.misbehave(unknown_key=True)

    with pytest.raises(OAuthFailedError):
        await sign_in(google, provider)

    assert provider.jwks_fetches == 2


async def test_a_google_issuer_is_accepted_without_its_scheme(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeOidcProvider(issuer="https://accounts.google.com") as provider:
        google = GoogleIdentityProvider(provider.discovery_url, http=session)
        provider.misbehave(iss="accounts.google.com")

        assert (await sign_in(google, provider)).subject == provider.next_identity().sub


async def test_an_unreachable_token_endpoint_fails_the_sign_in(
    google: GoogleIdentityProvider, provider: FakeOidcProvider
) -> None:
    url = await google.authorization_url(
        provider.client, redirect_uri=REDIRECT_URI, state="s", nonce="n", code_challenge="c"
    )
    assert url  # metadata is now cached; the provider goes away
    await provider.close()

    with pytest.raises(ProviderUnavailableError):
        await google.exchange(
            provider.client, code="code", redirect_uri=REDIRECT_URI, code_verifier="v", nonce="n"
        )


async def test_an_unreachable_discovery_fails_the_authorization_url(
    provider: FakeOidcProvider, session: aiohttp.ClientSession
) -> None:
    google = GoogleIdentityProvider(provider.discovery_url, http=session)
    await provider.close()

    with pytest.raises(ProviderUnavailableError):
        await google.authorization_url(
            provider.client, redirect_uri=REDIRECT_URI, state="s", nonce="n", code_challenge="c"
        )


async def test_a_hanging_token_endpoint_times_out(
    provider: FakeOidcProvider, session: aiohttp.ClientSession
) -> None:
    google = GoogleIdentityProvider(provider.discovery_url, http=session, timeout_seconds=0.2)
    provider.misbehave(token_hang=True)

    with pytest.raises(ProviderUnavailableError):
        await sign_in(google, provider)


async def test_a_code_is_not_logged(
    google: GoogleIdentityProvider, provider: FakeOidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.misbehave(token_status=400)
    caplog.set_level("DEBUG", logger="identity")

    with pytest.raises(OAuthFailedError) as failure:
        await google.exchange(
            provider.client,
            code="secret-code-123",
            redirect_uri=REDIRECT_URI,
            code_verifier="v",
            nonce="n",
        )

    assert caplog.records, "the refusal should be logged"
    assert "secret-code-123" not in caplog.text
    assert "secret-code-123" not in str(failure.value)


def test_google_issuer_with_scheme_accepts_the_bare_host() -> None:
    assert accepted_issuers("https://accounts.google.com") == {
        "https://accounts.google.com",
        "accounts.google.com",
    }


def test_google_issuer_without_scheme_accepts_the_https_form() -> None:
    assert accepted_issuers("accounts.google.com") == {
        "https://accounts.google.com",
        "accounts.google.com",
    }


def test_an_http_issuer_has_no_twin() -> None:
    assert accepted_issuers("http://127.0.0.1:8080") == {"http://127.0.0.1:8080"}


@pytest.mark.parametrize("status", [500, 503])
async def test_a_failing_token_endpoint_is_unavailable_not_a_refusal(
    google: GoogleIdentityProvider, provider: FakeOidcProvider, status: int
) -> None:
    provider.misbehave(token_status=status)

    with pytest.raises(ProviderUnavailableError):
        await sign_in(google, provider)


async def test_start_up_discovery_tells_a_wrong_url_from_a_provider_that_is_down(
    provider: FakeOidcProvider, session: aiohttp.ClientSession
) -> None:
    wrong_path = OidcIdentityProvider("corp", f"{provider.base_url}/nothing-here", http=session)
    with pytest.raises(DiscoveryConfigurationError, match="404"):
        await wrong_path.discover()
    not_oidc = OidcIdentityProvider("corp", f"{provider.base_url}/jwks", http=session)
    with pytest.raises(DiscoveryConfigurationError, match="not an OpenID Connect discovery"):
        await not_oidc.discover()

    working = OidcIdentityProvider("corp", provider.discovery_url, http=session)
    await working.discover()
    assert provider.discovery_fetches == 1

    down = OidcIdentityProvider("corp", provider.discovery_url, http=session)
    await provider.close()
    with pytest.raises(ProviderUnavailableError) as failure:
        await down.discover()
    assert not isinstance(failure.value, DiscoveryConfigurationError)


async def test_a_named_provider_reports_its_own_name_and_scopes(
    provider: FakeOidcProvider, session: aiohttp.ClientSession
) -> None:
    corp = OidcIdentityProvider(
        "corp", provider.discovery_url, http=session, scopes="openid email groups"
    )
    provider.next_identity(sub="corp-7", email="eve@corp.example")
    state, nonce, verifier = new_state(), new_nonce(), new_code_verifier()

    url = await corp.authorization_url(
        provider.client,
        redirect_uri=REDIRECT_URI,
        state=state,
        nonce=nonce,
        code_challenge=s256_challenge(verifier),
    )
    query = parse_qs(urlsplit(await provider.browser_authorize(url)).query)
    identity = await corp.exchange(
        provider.client,
        code=query["code"][0],
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier,
        nonce=nonce,
    )

    assert provider.authorize_requests[-1].scope == "openid email groups"
    assert (identity.provider, identity.subject) == ("corp", "corp-7")


async def test_a_generic_provider_accepts_only_its_exact_issuer(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeOidcProvider(issuer="https://login.corp.example") as provider:
        corp = OidcIdentityProvider("corp", provider.discovery_url, http=session)
        provider.misbehave(iss="login.corp.example")

        with pytest.raises(OAuthFailedError):
            await sign_in(corp, provider)
