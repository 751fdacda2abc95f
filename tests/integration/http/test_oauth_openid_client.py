"""An OpenID Certified relying party, ``openid-client`` (npm) run by node, against a live
server: discovery, the code flow with PKCE, userinfo and refresh (section 17)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.integration.http.oauth_support import BROWSER_COOKIE, OAuthApi, start_oauth_api
from tests.smtp_server import SmtpTestServer

# Outside the clone (as axe-core's), so a fresh clone does not install it again.
CACHE = Path(
    os.environ.get("IDENTITY_TEST_NODE_CACHE", Path.home() / ".cache" / "identity-oidc-node")
)
SCRIPT = Path(__file__).with_name("oidc_rp.mjs")
PACKAGE = "openid-client@6"


async def run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode == 0, f"{argv[0]} failed: {err.decode()[-2000:]}"
    return out.decode()


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    return found


def _prepared() -> tuple[bool, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    script = CACHE / SCRIPT.name
    script.write_text(SCRIPT.read_text())
    return (CACHE / "node_modules" / "openid-client").is_dir(), script


async def installed(node: str) -> Path:
    """openid-client in a cache directory, installed from the registry when missing."""
    present, script = await asyncio.to_thread(_prepared)
    if not present:
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install openid-client"
        await run(npm, "install", "--no-audit", "--no-fund", "--silent", PACKAGE, cwd=CACHE)
    return script


@pytest.fixture
async def oauth(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> OAuthApi:
    return await start_oauth_api(smtp, migrated_postgres_url, aiohttp_client)


async def test_openid_client_runs_discovery_code_flow_userinfo_and_refresh(
    node: str, oauth: OAuthApi
) -> None:
    script = await installed(node)
    redirect_uri = "https://rp.example/callback"
    client_id, secret = await oauth.confidential(redirect_uris=(redirect_uri,), first_party=True)
    cookie, _ = await oauth.sign_in_browser("node-rp@example.com", full_name="Grace Hopper")
    env = {
        **os.environ,
        "ISSUER": oauth.api.settings.issuer,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": secret,
        "REDIRECT_URI": redirect_uri,
        "BROWSER_COOKIE": f"{BROWSER_COOKIE}={cookie}",
    }
    result = json.loads((await run(node, str(script), cwd=CACHE, env=env)).strip())
    assert result["issuer"] == oauth.api.settings.issuer
    assert result["aud"] == client_id and result["azp"] == client_id
    assert result["nonce_ok"] is True and result["at_hash"]
    assert result["userinfo"] == {
        "sub": result["sub"],
        "email": "node-rp@example.com",
        "email_verified": True,
        "name": "Grace Hopper",
    }
    assert result["refreshed"] is True and result["rotated"] is True
