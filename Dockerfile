# One image for every role: riskstream worker | gateway | sink | train | topics | db upgrade.
# Build stage: wheels only. Final stage: no compilers, no pip cache, non-root, read-only friendly.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY api ./api
COPY training ./training
# the `riskstream bench` command (its results folder is left out by .dockerignore)
COPY bench ./bench
RUN pip install --upgrade pip && pip install .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 riskstream \
 && useradd --system --uid 10001 --gid riskstream --home-dir /app --shell /usr/sbin/nologin riskstream \
 && apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY schemas ./schemas
COPY rules ./rules
RUN mkdir -p /app/models /app/var && chown -R riskstream:riskstream /app/models /app/var
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RISKSTREAM_ENVIRONMENT=production \
    RISKSTREAM_MODEL__DIR=/app/models \
    RISKSTREAM_RULES__DIR=/app/rules \
    RISKSTREAM_SCHEMAS_DIR=/app/schemas \
    RISKSTREAM_WORKER__DATA_DIR=/app/var/worker \
    RISKSTREAM_GATEWAY__HOST=0.0.0.0
USER 10001:10001
EXPOSE 8000 6066
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + __import__('os').environ.get('HEALTH_PORT', '8000') + '/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["riskstream"]
CMD ["--help"]
