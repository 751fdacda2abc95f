"""The dependency-injector container: the single composition root.

Infrastructure is ``Singleton``; use cases are ``Factory``; the choice of
backend (mailer, rate limiter) is a ``Selector`` on settings. Storage is a
``Selector`` on ``storage``: ``"sql"`` (the database of
``IDENTITY_DATABASE_URL``) unless ``identity.testing`` overrides it with
``"memory"`` (one process, nothing kept). The token codec
needs the key ring, which is read from the database at start-up: the app
overrides ``keyring`` then (see ``app.py``).
"""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from dependency_injector import containers, providers

from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor
from identity.adapters.clock import SystemClock
from identity.adapters.common_passwords import ZxcvbnCommonPasswords
from identity.adapters.email_syntax import normalise_email
from identity.adapters.github import GitHubIdentityProvider
from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.adapters.mail import LogMailer, SmtpMailer
from identity.adapters.memory import MemoryActiveSessionReader, MemoryStore, MemoryUnitOfWork
from identity.adapters.memory.api_keys import MemoryApiKeyReader
from identity.adapters.memory.keys import MemorySigningKeyStore
from identity.adapters.memory.probe import MemoryStoreProbe
from identity.adapters.oidc.google import GoogleIdentityProvider
from identity.adapters.oidc.provider import OidcIdentityProvider
from identity.adapters.ratelimit import (
    FallbackRateLimiter,
    MemoryRateLimiter,
    RedisRateLimiter,
    create_rate_limit_redis,
)
from identity.adapters.sealing import Sealer
from identity.adapters.signing_keys import KeyEncryptor, KeyRing
from identity.adapters.sqlalchemy.api_keys import SqlApiKeyReader
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.health import DatabaseProbe
from identity.adapters.sqlalchemy.keys import SigningKeyStore
from identity.adapters.sqlalchemy.reads import SqlActiveSessionReader
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.adapters.totp import PyotpTotpEngine
from identity.adapters.webhook_http import AiohttpWebhookSender, PublicTargetGuard
from identity.adapters.work_signal import EventWorkSignal
from identity.application import accounts, admin, external_sign_in, mfa, self_service, sessions
from identity.application.admin import UserAdmin
from identity.application.api_keys import ApiKeyDigester, ApiKeys, AuthenticateApiKey
from identity.application.browser_sessions import (
    AuthenticateBrowser,
    BrowserKeyDigester,
    BrowserSessionServices,
    EndBrowserSession,
    StartBrowserSession,
)
from identity.application.events import ListEvents
from identity.application.introspection import Introspect
from identity.application.mail_delivery import DeliverPendingMail, PurgeExpired
from identity.application.mail_templates import MailTemplates
from identity.application.otp_codes import CodeDigester
from identity.application.policy import Policy
from identity.application.recovery_codes import RecoveryCodeDigester
from identity.application.tenancy import ResolveTenant, TenantAdmin
from identity.application.throttle import Throttle
from identity.application.tokens import SessionTokens
from identity.application.webhooks import DeliverWebhooks, Webhooks
from identity.domain.webhooks import RETRY_SCHEDULE
from identity.entrypoints.settings import Settings


def policy_from(settings: Settings) -> Policy:
    return Policy(
        access_token_ttl=timedelta(seconds=settings.access_token_ttl),
        refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl),
        otp_ttl=timedelta(seconds=settings.otp_ttl),
        otp_max_attempts=settings.otp_max_attempts,
        refresh_reuse_grace=timedelta(seconds=settings.refresh_reuse_grace),
        email_from=settings.email_from,
        rate_limit_login=settings.rate_limit_login,
        rate_limit_otp_request=settings.rate_limit_otp_request,
        rate_limit_otp_verify=settings.rate_limit_otp_verify,
        google_client_id=settings.google_client_id,
        google_client_secret=(
            settings.google_client_secret.value if settings.google_client_secret else None
        ),
        oauth_redirect_allowlist=settings.oauth_redirect_allowlist,
        provider_clients=provider_clients(settings),
    )


def provider_clients(settings: Settings) -> dict[str, tuple[str | None, str | None]]:
    """The deployment's clients of GitHub and the named OIDC providers, by settings key."""
    github_secret = settings.github_client_secret
    clients: dict[str, tuple[str | None, str | None]] = {
        "github": (settings.github_client_id, github_secret.value if github_secret else None)
    }
    for oidc in settings.oidc_providers:
        clients[f"oidc_{oidc.name}"] = (oidc.client_id, oidc.client_secret.value)
    return clients


def google_redirect_uri(settings: Settings) -> str:
    """Where the provider sends the browser back: explicit, or derived from the issuer."""
    if settings.google_redirect_uri:
        return settings.google_redirect_uri
    return f"{settings.issuer.rstrip('/')}/auth/google/callback"


def identity_providers(
    settings: Settings, http: aiohttp.ClientSession, clock: SystemClock
) -> dict[str, external_sign_in.ConfiguredProvider]:
    """Every provider by name: Google and GitHub always (a tenant may bring the
    client), and each provider of ``IDENTITY_OIDC_PROVIDERS``."""
    issuer = settings.issuer.rstrip("/")
    timeout, leeway = settings.provider_timeout, settings.clock_skew
    configured = external_sign_in.ConfiguredProvider
    found = {
        "google": configured(
            name="google",
            method="google",
            settings_key="google",
            adapter=GoogleIdentityProvider(
                settings.google_discovery_url,
                http=http,
                leeway_seconds=leeway,
                timeout_seconds=timeout,
                clock=clock,
            ),
            redirect_uri=google_redirect_uri(settings),
        ),
        "github": configured(
            name="github",
            method="github",
            settings_key="github",
            adapter=GitHubIdentityProvider(
                http=http,
                base_url=settings.github_base_url,
                api_url=settings.github_api_url,
                timeout_seconds=timeout,
            ),
            redirect_uri=settings.github_redirect_uri or f"{issuer}/auth/github/callback",
        ),
    }
    for oidc in settings.oidc_providers:
        found[oidc.name] = configured(
            name=oidc.name,
            method="oidc",
            settings_key=f"oidc_{oidc.name}",
            adapter=OidcIdentityProvider(
                oidc.name,
                oidc.discovery_url,
                http=http,
                scopes=oidc.scopes,
                leeway_seconds=leeway,
                timeout_seconds=timeout,
                clock=clock,
            ),
            redirect_uri=oidc.redirect_uri or f"{issuer}/auth/oidc/{oidc.name}/callback",
        )
    return found


def mailer_kind(settings: Settings) -> str:
    return "smtp" if settings.smtp_host else "log"


def limiter_kind(settings: Settings) -> str:
    return "redis" if settings.redis_url else "memory"


def secret(settings: Settings) -> str:
    return settings.secret_key.value


def redis_url(settings: Settings) -> str:
    return settings.redis_url.value if settings.redis_url else ""


def hasher_threads(settings: Settings) -> int | None:
    return settings.hasher_threads or None  # 0: one thread per CPU


def event_retention(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.event_retention)


def smtp_password(settings: Settings) -> str | None:
    return settings.smtp_password.value if settings.smtp_password else None


class Container(containers.DeclarativeContainer):
    wiring_config = containers.WiringConfiguration(
        modules=[
            "identity.entrypoints.http.handlers.accounts",
            "identity.entrypoints.http.handlers.admin_tenants",
            "identity.entrypoints.http.handlers.admin_users",
            "identity.entrypoints.http.handlers.api_keys",
            "identity.entrypoints.http.handlers.self_service",
            "identity.entrypoints.http.handlers.events",
            "identity.entrypoints.http.handlers.google",
            "identity.entrypoints.http.handlers.introspection",
            "identity.entrypoints.http.handlers.providers",
            "identity.entrypoints.http.handlers.mfa",
            "identity.entrypoints.http.handlers.sessions",
            "identity.entrypoints.http.handlers.system",
            "identity.entrypoints.http.handlers.webhooks",
        ]
    )

    settings = providers.Dependency(instance_of=Settings)
    secret_key = providers.Callable(secret, settings)

    clock = providers.Singleton(SystemClock)
    storage = providers.Object("sql")
    engine = providers.Singleton(
        make_engine,
        settings.provided.database_url,
        pool_size=settings.provided.db_pool_size,
        pool_timeout=settings.provided.db_pool_timeout,
        statement_timeout=settings.provided.db_statement_timeout,
    )
    memory_store = providers.Singleton(MemoryStore)
    outbox_sealer = providers.Singleton(Sealer, secret_key, "outbox")
    oauth_state_sealer = providers.Singleton(Sealer, secret_key, "oauth-state")
    code_request_sealer = providers.Singleton(Sealer, secret_key, "code-request")
    webhook_sealer = providers.Singleton(Sealer, secret_key, "webhook-secret")
    totp_sealer = providers.Singleton(Sealer, secret_key, "totp-secret")
    tenant_secret_sealer = providers.Singleton(Sealer, secret_key, "tenant-secret")
    uow = providers.Selector(
        storage,
        sql=providers.Factory(
            SqlUnitOfWork,
            engine=engine,
            outbox_sealer=outbox_sealer,
            oauth_state_sealer=oauth_state_sealer,
            code_request_sealer=code_request_sealer,
            webhook_sealer=webhook_sealer,
            totp_sealer=totp_sealer,
            tenant_secret_sealer=tenant_secret_sealer,
        ),
        memory=providers.Factory(MemoryUnitOfWork, memory_store),
    )
    session_reader = providers.Selector(
        storage,
        sql=providers.Singleton(SqlActiveSessionReader, engine),
        memory=providers.Singleton(MemoryActiveSessionReader, memory_store),
    )
    storage_probe = providers.Selector(
        storage,
        sql=providers.Singleton(DatabaseProbe, engine),
        memory=providers.Singleton(MemoryStoreProbe, memory_store),
    )

    key_encryptor = providers.Singleton(KeyEncryptor, secret_key)
    key_store = providers.Selector(
        storage,
        sql=providers.Singleton(
            SigningKeyStore, engine, key_encryptor, settings.provided.signing_algorithm
        ),
        memory=providers.Singleton(
            MemorySigningKeyStore, key_encryptor, settings.provided.signing_algorithm
        ),
    )
    keyring = providers.Dependency(instance_of=KeyRing)
    token_codec = providers.Singleton(
        JwtTokenCodec,
        keyring,
        issuer=settings.provided.issuer,
        audience=settings.provided.audience,
        leeway_seconds=settings.provided.clock_skew,
        clock=clock,
    )

    hasher_executor = providers.Singleton(
        make_hasher_executor, providers.Callable(hasher_threads, settings)
    )
    hasher = providers.Singleton(
        BcryptSha256Hasher, settings.provided.bcrypt_rounds, hasher_executor
    )
    common_passwords = providers.Singleton(ZxcvbnCommonPasswords)

    mailer = providers.Selector(
        providers.Callable(mailer_kind, settings),
        smtp=providers.Singleton(
            SmtpMailer,
            settings.provided.smtp_host,
            settings.provided.smtp_port,
            tls_mode=settings.provided.smtp_tls,
            username=settings.provided.smtp_username,
            password=providers.Callable(smtp_password, settings),
            timeout_seconds=settings.provided.smtp_timeout,
        ),
        log=providers.Singleton(LogMailer),
    )

    memory_rate_limiter = providers.Singleton(MemoryRateLimiter, clock)
    redis_client = providers.Singleton(
        create_rate_limit_redis, providers.Callable(redis_url, settings)
    )
    rate_limiter = providers.Selector(
        providers.Callable(limiter_kind, settings),
        memory=memory_rate_limiter,
        redis=providers.Singleton(
            FallbackRateLimiter,
            providers.Singleton(RedisRateLimiter, redis_client),
            memory_rate_limiter,
        ),
    )

    policy = providers.Singleton(policy_from, settings)
    digester = providers.Singleton(CodeDigester, secret_key)
    templates = providers.Singleton(MailTemplates, settings.provided.email_from)
    session_tokens = providers.Singleton(SessionTokens, token_codec, clock)
    throttle = providers.Singleton(Throttle, rate_limiter)
    code_requests_signal = providers.Singleton(EventWorkSignal)

    account_services = providers.Singleton(
        accounts.AccountServices,
        uow=uow.provider,
        clock=clock,
        hasher=hasher,
        common_passwords=common_passwords,
        digester=digester,
        templates=templates,
        tokens=session_tokens,
        throttle=throttle,
        policy=policy,
        code_requests_signal=code_requests_signal,
    )
    session_services = providers.Singleton(
        sessions.SessionServices,
        uow=uow.provider,
        clock=clock,
        codec=token_codec,
        tokens=session_tokens,
        hasher=hasher,
        common_passwords=common_passwords,
        templates=templates,
        policy=policy,
        session_reader=session_reader,
    )

    resolve_tenant = providers.Singleton(ResolveTenant, uow.provider)
    register_user = providers.Factory(accounts.RegisterUser, account_services)
    request_otp = providers.Factory(accounts.RequestOtp, account_services)
    verify_otp = providers.Factory(accounts.VerifyOtp, account_services)
    reset_password = providers.Factory(accounts.ResetPasswordWithCode, account_services)
    log_in = providers.Factory(accounts.LogInWithPassword, account_services)

    authenticate = providers.Factory(sessions.Authenticate, session_services)
    refresh_session = providers.Factory(sessions.RefreshSession, session_services)
    log_out = providers.Factory(sessions.LogOut, session_services)
    log_out_everywhere = providers.Factory(sessions.LogOutEverywhere, session_services)
    list_sessions = providers.Factory(sessions.ListSessions, session_services)
    revoke_session = providers.Factory(sessions.RevokeSession, session_services)
    change_password = providers.Factory(sessions.ChangePassword, session_services)
    introspect = providers.Factory(Introspect, authenticate)

    totp = providers.Singleton(PyotpTotpEngine)
    mfa_services = providers.Singleton(
        mfa.MfaServices,
        uow=uow.provider,
        clock=clock,
        totp=totp,
        digester=providers.Singleton(RecoveryCodeDigester, secret_key),
        tokens=session_tokens,
        throttle=throttle,
        policy=policy,
    )
    enroll_totp = providers.Factory(mfa.EnrollTotp, mfa_services)
    confirm_totp = providers.Factory(mfa.ConfirmTotp, mfa_services)
    verify_mfa = providers.Factory(mfa.VerifyMfa, mfa_services)
    step_up = providers.Factory(mfa.StepUp, mfa_services)
    renew_recovery_codes = providers.Factory(mfa.RenewRecoveryCodes, mfa_services)
    disable_totp = providers.Factory(mfa.DisableTotp, mfa_services)
    reset_mfa = providers.Factory(mfa.ResetMfa, mfa_services)

    # The HTTP client session lives in the running loop: the app overrides it at start-up.
    http_client = providers.Dependency(instance_of=aiohttp.ClientSession)
    identity_providers = providers.Singleton(
        identity_providers, settings, http=http_client, clock=clock
    )
    sign_in_services = providers.Singleton(
        external_sign_in.ExternalSignInServices,
        uow=uow.provider,
        clock=clock,
        providers=identity_providers,
        tokens=session_tokens,
        policy=policy,
        normalise_email=providers.Object(normalise_email),
    )
    start_external_sign_in = providers.Factory(
        external_sign_in.StartExternalSignIn, sign_in_services
    )
    finish_external_sign_in = providers.Factory(
        external_sign_in.FinishExternalSignIn, sign_in_services
    )
    list_identities = providers.Factory(external_sign_in.ListIdentities, sign_in_services)
    unlink_identity = providers.Factory(external_sign_in.UnlinkIdentity, sign_in_services)

    deliver_mail = providers.Singleton(DeliverPendingMail, uow.provider, mailer, clock)
    issue_requested_codes = providers.Factory(accounts.IssueRequestedCodes, account_services)
    purge_expired = providers.Factory(
        PurgeExpired, uow.provider, clock, providers.Callable(event_retention, settings)
    )
    tenant_admin = providers.Factory(TenantAdmin, uow.provider, clock)
    user_admin = providers.Factory(UserAdmin, uow.provider, clock)

    admin_services = providers.Singleton(
        admin.AdminServices,
        uow=uow.provider,
        clock=clock,
        hasher=hasher,
        common_passwords=common_passwords,
    )
    list_users = providers.Factory(admin.ListUsers, admin_services)
    create_user = providers.Factory(admin.CreateUser, admin_services)
    get_user = providers.Factory(admin.GetUser, admin_services)
    update_user = providers.Factory(admin.UpdateUser, admin_services)
    delete_user = providers.Factory(admin.DeleteUser, admin_services)
    list_user_sessions = providers.Factory(admin.ListUserSessions, admin_services)
    log_out_user = providers.Factory(admin.LogOutUser, admin_services)
    delete_own_account = providers.Factory(self_service.DeleteOwnAccount, account_services)
    export_own_account = providers.Factory(self_service.ExportOwnAccount, account_services)

    api_key_digester = providers.Singleton(ApiKeyDigester, secret_key)
    api_keys = providers.Factory(ApiKeys, uow.provider, clock, api_key_digester)
    # The per-request key read (one round trip); a memory store overrides it with
    # ``MemoryApiKeyReader``, as it does the session reader.
    api_key_reader = providers.Selector(
        storage,
        sql=providers.Singleton(SqlApiKeyReader, engine),
        memory=providers.Singleton(MemoryApiKeyReader, memory_store),
    )
    authenticate_api_key = providers.Singleton(AuthenticateApiKey, api_key_reader, api_key_digester)

    list_events = providers.Factory(ListEvents, uow.provider)

    webhook_guard = providers.Singleton(
        PublicTargetGuard, allow_private=settings.provided.webhook_allow_private
    )
    # Tests shorten these; the contract's values otherwise.
    webhook_timeout = providers.Object(10.0)
    webhook_retry_schedule = providers.Object(RETRY_SCHEDULE)
    webhook_sender = providers.Singleton(
        AiohttpWebhookSender, webhook_guard, timeout_seconds=webhook_timeout
    )
    webhooks = providers.Factory(Webhooks, uow.provider, clock, webhook_guard)
    deliver_webhooks = providers.Singleton(
        DeliverWebhooks, uow.provider, webhook_sender, clock, schedule=webhook_retry_schedule
    )

    # --- hosted pages (section 16): browser sessions -----------------------------------
    browser_digester = providers.Singleton(BrowserKeyDigester, secret_key)
    browser_services = providers.Singleton(
        BrowserSessionServices, uow.provider, clock, browser_digester
    )
    start_browser_session = providers.Factory(StartBrowserSession, browser_services)
    authenticate_browser = providers.Factory(AuthenticateBrowser, browser_services)
    end_browser_session = providers.Factory(EndBrowserSession, browser_services)
