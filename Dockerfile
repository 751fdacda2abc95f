# identity: build the wheel, install it into a slim image, run as a non-root user.
#   docker build -t identity .
#   docker run --rm --env-file identity.env identity migrate    # once per release
#   docker run -d -p 8000:8000 --env-file identity.env identity  # serve

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY identity ./identity
COPY migrations ./migrations
# The dependencies at the versions the test suite last passed with.
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /srv/identity identity
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER identity
WORKDIR /srv/identity
ENV PYTHONUNBUFFERED=1 \
    IDENTITY_HOST=0.0.0.0 \
    IDENTITY_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["identity"]
CMD ["serve"]
