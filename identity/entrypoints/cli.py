"""The ``identity`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from identity.adapters.sqlalchemy import migrate
from identity.application.api_keys import CreateKey
from identity.domain.api_keys import ApiKey, ApiKeyNotFoundError, Scope
from identity.domain.errors import DomainError, StorageUnavailableError
from identity.entrypoints.container import Container
from identity.entrypoints.logs import configure_logging
from identity.entrypoints.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
log = logging.getLogger("identity.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="identity", description="Self-hosted identity service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", help="bind address (default IDENTITY_HOST)")
    serve.add_argument("--port", type=int, help="port (default IDENTITY_PORT)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")

    commands.add_parser("migrate", help="apply pending database migrations")

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("rotate", help="add a new signing key; the old ones keep verifying")

    tenants = commands.add_parser("tenants", help="tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenants.add_parser("create", help="create a tenant")
    create.add_argument("slug")
    create.add_argument("--name")
    tenants.add_parser("list", help="list tenants")
    setting = tenants.add_parser("set", help="set a per-tenant setting")
    setting.add_argument("slug")
    setting.add_argument("key")
    setting.add_argument("value")
    for action in ("disable", "enable"):
        tenants.add_parser(action, help=f"{action} a tenant").add_argument("slug")

    users = commands.add_parser("users", help="user accounts").add_subparsers(
        dest="action", required=True
    )
    for action in ("show", "disable", "enable"):
        command = users.add_parser(action, help=f"{action} a user")
        command.add_argument("email")
        command.add_argument("--tenant", default="default", help="tenant slug (default: default)")

    apikeys = commands.add_parser("apikeys", help="API keys of the admin API").add_subparsers(
        dest="action", required=True
    )
    mint = apikeys.add_parser("create", help="create a key (printed once, last)")
    mint.add_argument("--name", required=True)
    mint.add_argument("--scopes", required=True, help="comma list, e.g. users:read,users:write")
    mint.add_argument("--tenant", default="default", help="tenant slug (default: default)")
    listing = apikeys.add_parser("list", help="list keys (no secrets)")
    listing.add_argument("--tenant", default="default", help="tenant slug (default: default)")
    revoke = apikeys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id")
    revoke.add_argument("--tenant", default="default", help="tenant slug (default: default)")
    return parser


def _scopes(raw: str) -> frozenset[Scope]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    known = {scope.value: scope for scope in Scope}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; one of: {', '.join(known)}")
    return frozenset(known[name] for name in names)


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"identity: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "serve":
        from identity.entrypoints.server import serve

        try:
            return serve(settings, host=args.host, port=args.port, workers=args.workers)
        except SettingsError as error:
            # Found at start-up (a provider's discovery URL that can never work).
            print(f"identity: configuration error: {error}", file=sys.stderr)
            return 2
    try:
        if args.command == "migrate":
            migrate.upgrade(settings.database_url)
            print("migrations applied")
            return 0
        if settings.is_embedded_database:
            migrate.upgrade(settings.database_url)
        return asyncio.run(_admin(settings, args))
    except (DomainError, ValueError) as error:
        print(f"identity: {type(error).__name__.removesuffix('Error')}: {error}", file=sys.stderr)
        return 1
    except StorageUnavailableError:
        print("identity: database unavailable: check IDENTITY_DATABASE_URL", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as error:
        # One line, no URL and no SQL: the cause's type is enough to act on.
        cause = type(getattr(error, "orig", None) or error).__name__
        print(
            f"identity: database error ({cause}); is it reachable and migrated? "
            "run 'identity migrate'",
            file=sys.stderr,
        )
        return 1


async def _with_container(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    container = Container()
    container.settings.override(settings)
    try:
        return await work(container)
    finally:
        await container.engine().dispose()


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    from identity.adapters.email_syntax import normalise_email

    async def run(container: Container) -> int:
        if args.command == "keys":
            key = await container.key_store().add_new(container.clock().now())
            _print({"kid": key.kid, "algorithm": key.algorithm, "created_at": key.created_at})
            return 0
        if args.command == "apikeys":
            return await _apikeys(container, args)
        if args.command == "tenants":
            admin = container.tenant_admin()
            if args.action == "create":
                tenant = await admin.create(args.slug, args.name)
                _print({"id": tenant.id, "slug": tenant.slug, "name": tenant.name})
            elif args.action == "list":
                _print(
                    [
                        {"id": t.id, "slug": t.slug, "name": t.name, "disabled": t.disabled}
                        for t in await admin.list()
                    ]
                )
            elif args.action == "set":
                tenant = await admin.set(args.slug, args.key, args.value)
                shown = {
                    k: ("********" if "secret" in k else v) for k, v in tenant.settings.items()
                }
                _print({"slug": tenant.slug, "settings": shown})
            else:
                tenant = await admin.set_disabled(args.slug, args.action == "disable")
                _print({"slug": tenant.slug, "disabled": tenant.disabled})
            return 0
        users = container.user_admin()
        email = normalise_email(args.email)
        if args.action == "show":
            account = await users.show(args.tenant, email)
            ended = None
        else:
            account, ended = await users.set_active(args.tenant, email, args.action == "enable")
        view: dict[str, Any] = {
            "id": account.id,
            "email": account.email.value,
            "full_name": account.full_name,
            "is_active": account.is_active,
            "is_verified": account.is_verified,
            "has_password": account.has_password,
            "mfa_enabled": account.mfa_enabled,
            "created_at": account.created_at,
            "tenant": args.tenant,
        }
        if ended is not None:
            view["sessions_revoked"] = ended
        _print(view)
        return 0

    return await _with_container(settings, run)


async def _apikeys(container: Container, args: argparse.Namespace) -> int:
    tenant = await container.resolve_tenant()(args.tenant)
    keys = container.api_keys()
    if args.action == "create":
        new = await keys.create(CreateKey(tenant, args.name, _scopes(args.scopes)))
        _print({**_key_view(new.key), "tenant": tenant.slug})
        print(new.token)  # shown once, on a line of its own, last
    elif args.action == "list":
        _print([_key_view(key) for key in await keys.list(tenant.id)])
    else:
        try:
            key_id = uuid.UUID(args.id)
        except ValueError:
            raise ApiKeyNotFoundError(args.id) from None
        _print(_key_view(await keys.revoke(tenant.id, key_id)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
