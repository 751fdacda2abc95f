"""Prometheus metrics: requests by route and status, logins, limits, the outbox and
the webhook queue, and the background jobs."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LOGIN_ROUTES = {
    "/auth/login": "password",
    "/auth/verify-otp": "otp",
    "/auth/google/callback": "google",
}


class Metrics:
    """One registry per application, so tests and workers never share state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "identity_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "identity_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.logins = Counter(
            "identity_logins_total",
            "Login attempts by method and outcome.",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "identity_rate_limit_rejections_total",
            "Requests refused with 429, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "identity_email_outbox_pending",
            "Mail messages waiting in the outbox.",
            registry=self.registry,
        )
        self.webhook_depth = Gauge(
            "identity_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered or given up (due now or retrying later).",
            registry=self.registry,
        )
        self.job_runs = Counter(
            "identity_background_job_runs_total",
            "Runs of this process's background jobs, by job and outcome (ok, failed).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.job_last_success = Gauge(
            "identity_background_job_last_success_timestamp_seconds",
            "Unix time of each background job's last successful run in this process.",
            ["job"],
            registry=self.registry,
        )

    def job_ran(self, job: str, ok: bool) -> None:
        self.job_runs.labels(job, "ok" if ok else "failed").inc()
        if ok:
            self.job_last_success.labels(job).set_to_current_time()

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = route_template(request)
        # Any token is a method to aiohttp: made-up ones share one label, so a
        # client cannot grow the series (and this cache) without bound.
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            # ``labels()`` takes a lock and builds a tuple per call: the few
            # combinations a server sees are looked up once.
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if status == 429:
            self.rate_limited.labels(route).inc()
        login_method = LOGIN_ROUTES.get(route)
        if login_method is not None and request.method in {"POST", "GET"}:
            self.logins.labels(login_method, login_outcome(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(request: web.Request) -> str:
    """The route's template (``/auth/sessions/{session_id}``), never the raw path."""
    match_info = request.match_info
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


def login_outcome(status: int) -> str:
    return {
        200: "success",
        302: "success",
        400: "failed",
        401: "invalid_credentials",
        403: "refused",
        422: "invalid_request",
        429: "rate_limited",
    }.get(status, "error")


METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
