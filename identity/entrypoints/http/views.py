"""Serialising results into the contract's JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from identity.application.accounts import CodeSent
from identity.application.first_factor import MfaRequired, SignInResult
from identity.application.tokens import ClientInfo, TokenPair
from identity.domain.accounts import Account
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant
from identity.entrypoints.http.keys import CLIENT_IP


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def user_view(account: Account, tenant: Tenant) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "email": account.email.value,
        "full_name": account.full_name,
        "is_active": account.is_active,
        "is_verified": account.is_verified,
        "has_password": account.has_password,
        "google_linked": account.google_linked,
        "identities": list(account.identities),
        "mfa_enabled": account.mfa_enabled,
        "created_at": iso(account.created_at),
        "tenant": tenant.slug,
    }


def token_view(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": pair.refresh_token_expires_in,
        "user": user_view(pair.account, pair.tenant),
    }


def mfa_required_view(result: MfaRequired) -> dict[str, Any]:
    return {
        "mfa_required": True,
        "mfa_token": result.mfa_token,
        "methods": list(result.methods),
        "expires_in": result.expires_in,
    }


def sign_in_view(result: SignInResult) -> dict[str, Any]:
    """A first factor's answer: tokens, or the ``mfa_required`` answer (both 200)."""
    if isinstance(result, MfaRequired):
        return mfa_required_view(result)
    return token_view(result)


def code_sent_view(result: CodeSent) -> dict[str, Any]:
    return {
        "message": "If the address can receive it, a code is on its way.",
        "email": result.email,
        "expires_in_minutes": result.expires_in_minutes,
    }


def session_view(session: Session, current_id: Any) -> dict[str, Any]:
    return {
        "id": str(session.id),
        "created_at": iso(session.created_at),
        "last_used_at": iso(session.last_used_at),
        "user_agent": session.user_agent,
        "ip": session.ip,
        "current": session.id == current_id,
        "kind": session.kind,
    }


def client_info(request: web.Request) -> ClientInfo:
    user_agent = request.headers.get("User-Agent")
    return ClientInfo(
        user_agent=user_agent[:512] if user_agent else None, ip=request.get(CLIENT_IP)
    )
