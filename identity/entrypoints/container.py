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
from urllib.parse import urlsplit

import aiohttp
import attrs
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
from identity.adapters.memory.oauth import MemoryOAuthClientReader
from identity.adapters.memory.probe import MemoryStoreProbe
from identity.adapters.memory.user_imports import MemoryImportRunRepository, MemoryUserImports
from identity.adapters.oauth_tokens import JoseOAuthTokens
from identity.adapters.oidc.google import GoogleIdentityProvider
from identity.adapters.oidc.provider import OidcIdentityProvider
from identity.adapters.ratelimit import (
    FallbackRateLimiter,
    MemoryRateLimiter,
    RedisRateLimiter,
    create_rate_limit_redis,
)
from identity.adapters.sealing import Sealers
from identity.adapters.signing_keys import KeyEncryptor, KeyRing
from identity.adapters.sqlalchemy.api_keys import SqlApiKeyReader
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.health import DatabaseProbe
from identity.adapters.sqlalchemy.keys import SigningKeyStore
from identity.adapters.sqlalchemy.oauth import SqlOAuthClientReader
from identity.adapters.sqlalchemy.reads import SqlActiveSessionReader
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.adapters.sqlalchemy.user_imports import (
    SqlImportRunRepository,
    SqlUserExporter,
    SqlUserImportWriter,
)
from identity.adapters.totp import PyotpTotpEngine
from identity.adapters.webauthn import PyWebAuthnCeremonies
from identity.adapters.webhook_http import AiohttpWebhookSender, PublicTargetGuard
from identity.adapters.work_signal import EventWorkSignal
from identity.application import (
    account_codes,
    account_passwords,
    accounts,
    admin,
    external_sign_in,
    mfa,
    oauth_server,
    organizations,
    passkeys,
    self_service,
    sessions,
)
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
from identity.application.imports import RunImport
from identity.application.introspection import Introspect
from identity.application.mail_delivery import DeliverPendingMail, PurgeExpired
from identity.application.mail_templates import MailTemplates
from identity.application.oauth_clients import ClientAdmin, ClientSecretDigester
from identity.application.otp_codes import CodeDigester
from identity.application.policy import Policy
from identity.application.recovery_codes import RecoveryCodeDigester
from identity.application.tenancy import ResolveTenant, TenantAdmin
from identity.application.throttle import Throttle
from identity.application.tokens import SessionTokens
from identity.application.webauthn_keys import WebAuthnKeys
from identity.application.webhooks import DeliverWebhooks, Webhooks
from identity.domain.webhooks import RETRY_SCHEDULE
from identity.entrypoints.background_imports import BackgroundImports
from identity.entrypoints.oauth_browser import PagesBrowserSessions
from identity.entrypoints.settings import Settings


def policy_from(settings: Settings) -> Policy:
    """The deployment policy: its settings, the other providers' clients, and the
    passkeys' relying party with its documented defaults (the issuer's host; https on it)."""
    policy = settings.policy
    rp_id = policy.webauthn_rp_id or urlsplit(settings.issuer).hostname or "localhost"
    return attrs.evolve(
        policy,
        provider_clients=provider_clients(settings),
        webauthn_rp_id=rp_id,
        webauthn_origins=policy.webauthn_origins or (f"https://{rp_id}",),
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
    # The handlers' ``Provide`` defaults are resolved by attribute name on the
    # container of the request's app (``declare.collect``): no module wiring.

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
    sealers = providers.Singleton(Sealers.derive, secret_key)
    uow = providers.Selector(
        storage,
        sql=providers.Factory(SqlUnitOfWork, engine=engine, sealers=sealers),
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
    templates = providers.Singleton(MailTemplates, settings.provided.policy.email_from)
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
    register_user = providers.Factory(account_codes.RegisterUser, account_services)
    request_otp = providers.Factory(account_codes.RequestOtp, account_services)
    verify_otp = providers.Factory(account_codes.VerifyOtp, account_services)
    reset_password = providers.Factory(account_passwords.ResetPasswordWithCode, account_services)
    log_in = providers.Factory(account_passwords.LogInWithPassword, account_services)

    authenticate = providers.Factory(sessions.Authenticate, session_services)
    refresh_session = providers.Factory(sessions.RefreshSession, session_services)
    log_out = providers.Factory(sessions.LogOut, session_services)
    log_out_everywhere = providers.Factory(sessions.LogOutEverywhere, session_services)
    list_sessions = providers.Factory(sessions.ListSessions, session_services)
    revoke_session = providers.Factory(sessions.RevokeSession, session_services)
    change_password = providers.Factory(sessions.ChangeOwnPassword, session_services)
    introspect = providers.Factory(Introspect, authenticate, uow.provider)

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
    issue_requested_codes = providers.Factory(account_codes.IssueRequestedCodes, account_services)
    purge_expired = providers.Factory(
        PurgeExpired, uow.provider, clock, providers.Callable(event_retention, settings)
    )
    tenant_admin = providers.Factory(TenantAdmin, uow.provider, clock)

    admin_services = providers.Singleton(
        admin.AdminServices,
        uow=uow.provider,
        clock=clock,
        hasher=hasher,
        common_passwords=common_passwords,
    )
    list_users = providers.Factory(admin.ListUsers, admin_services)
    user_admin = providers.Factory(UserAdmin, admin_services)
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

    # Moving users in and out (section 18): bulk writes outside the unit of work.
    memory_user_imports = providers.Singleton(MemoryUserImports, memory_store)
    user_import_writer = providers.Selector(
        storage,
        sql=providers.Singleton(SqlUserImportWriter, engine, sealers.provided.totp),
        memory=memory_user_imports,
    )
    import_runs = providers.Selector(
        storage,
        sql=providers.Singleton(SqlImportRunRepository, engine),
        memory=providers.Singleton(MemoryImportRunRepository),
    )
    user_exporter = providers.Selector(
        storage,
        sql=providers.Singleton(SqlUserExporter, engine, sealers.provided.totp),
        memory=memory_user_imports,
    )
    run_import = providers.Factory(
        RunImport, user_import_writer, import_runs, hasher, clock, uow.provider
    )
    background_imports = providers.Singleton(BackgroundImports)

    # --- passkeys (section 15) ---------------------------------------------------------
    passkey_services = providers.Singleton(
        passkeys.PasskeyServices,
        uow=uow.provider,
        clock=clock,
        ceremonies=providers.Singleton(PyWebAuthnCeremonies),
        keys=providers.Singleton(WebAuthnKeys, secret_key),
        tokens=session_tokens,
        throttle=throttle,
        templates=templates,
        policy=policy,
    )
    start_passkey_registration = providers.Factory(
        passkeys.StartPasskeyRegistration, passkey_services
    )
    finish_passkey_registration = providers.Factory(
        passkeys.FinishPasskeyRegistration, passkey_services
    )
    start_passkey_login = providers.Factory(passkeys.StartPasskeyLogin, passkey_services)
    finish_passkey_login = providers.Factory(passkeys.FinishPasskeyLogin, passkey_services)
    list_passkeys = providers.Factory(passkeys.ListPasskeys, passkey_services)
    rename_passkey = providers.Factory(passkeys.RenamePasskey, passkey_services)
    delete_passkey = providers.Factory(passkeys.DeletePasskey, passkey_services)
    admin_list_passkeys = providers.Factory(passkeys.AdminListPasskeys, passkey_services)
    admin_delete_passkey = providers.Factory(passkeys.AdminDeletePasskey, passkey_services)
    # --- organizations (section 19) ---
    organization_services = providers.Singleton(
        organizations.OrganizationServices,
        uow=uow.provider,
        clock=clock,
        tokens=session_tokens,
        templates=templates,
        policy=policy,
        digester=providers.Singleton(organizations.InvitationDigester, secret_key),
        ui_base_url=settings.provided.issuer,
    )
    self_service_organizations = providers.Factory(
        organizations.SelfServiceOrganizations, organization_services
    )
    admin_organizations = providers.Factory(organizations.AdminOrganizations, organization_services)

    # --- hosted pages (section 16): browser sessions -----------------------------------
    browser_digester = providers.Singleton(BrowserKeyDigester, secret_key)
    browser_services = providers.Singleton(
        BrowserSessionServices, uow.provider, clock, browser_digester, session_reader
    )
    start_browser_session = providers.Factory(StartBrowserSession, browser_services)
    authenticate_browser = providers.Factory(AuthenticateBrowser, browser_services)
    end_browser_session = providers.Factory(EndBrowserSession, browser_services)

    # --- the authorization server (section 17) ---
    client_secret_digester = providers.Singleton(ClientSecretDigester, secret_key)
    client_admin = providers.Factory(ClientAdmin, uow.provider, clock, client_secret_digester)
    oauth_tokens = providers.Singleton(
        JoseOAuthTokens,
        token_codec,
        issuer=settings.provided.issuer,
        leeway_seconds=settings.provided.clock_skew,
        clock=clock,
        http=http_client.provider,
        guard=webhook_guard,
    )
    oauth_services = providers.Singleton(
        oauth_server.OAuthServices,
        uow=uow.provider,
        clock=clock,
        tokens=oauth_tokens,
        secrets=client_secret_digester,
        codes=providers.Singleton(oauth_server.CodeDigester, secret_key),
        policy=policy,
        settings=providers.Factory(
            oauth_server.ServerSettings,
            issuer=settings.provided.issuer,
            audience=settings.provided.audience,
        ),
        clients=providers.Singleton(
            oauth_server.CachedClients,
            providers.Selector(
                storage,
                sql=providers.Singleton(SqlOAuthClientReader, engine),
                memory=providers.Singleton(MemoryOAuthClientReader, memory_store),
            ),
        ),
        tenants=resolve_tenant,
    )
    # Who is signed in in the browser: the hosted pages' session (tests override it).
    browser_sessions = providers.Singleton(
        PagesBrowserSessions, authenticate_browser.provider, resolve_tenant
    )
    authenticate_client = providers.Factory(oauth_server.AuthenticateClient, oauth_services)
    token_grants = providers.Factory(oauth_server.TokenGrants, oauth_services, session_reader)
    authorize_flow = providers.Factory(oauth_server.AuthorizeFlow, oauth_services, browser_sessions)
    grant_consent = providers.Factory(oauth_server.GrantConsent, oauth_services)
    client_tokens = providers.Factory(oauth_server.ClientTokens, oauth_services, session_reader)
    user_grants = providers.Factory(oauth_server.UserGrants, oauth_services)
    deliver_backchannel_logouts = providers.Singleton(
        oauth_server.DeliverBackchannelLogouts,
        uow.provider,
        webhook_sender,
        oauth_tokens,
        clock,
        schedule=webhook_retry_schedule,
    )
    rp_logout = providers.Factory(oauth_server.RpInitiatedLogout, oauth_services, browser_sessions)
