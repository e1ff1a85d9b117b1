# syntax=docker/dockerfile:1
#
# Huifang, production image for the distributed mode (see docker-compose.yml and
# DESIGN.md, "Modes of running"). One image runs every role, chosen by the command:
#   huifang serve | worker -Q … | beat | migrate
#
# Needs BuildKit (the default builder since Docker 23 and in `docker compose build`).

# --- build: turn the project and its dependencies into wheels -------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY huifang ./huifang
COPY tenancy ./tenancy
COPY customers ./customers
COPY visits ./visits
COPY messaging ./messaging
COPY media ./media
COPY campaigns ./campaigns
COPY compliance ./compliance
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime -----------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

# fonts-noto-cjk + fontconfig: the watermarks on visit photos are written in Chinese.
# tini: PID 1 that forwards signals (Celery's warm shutdown needs SIGTERM) and reaps children.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        fontconfig \
        fonts-noto-cjk \
        tini \
    && rm -rf /var/lib/apt/lists/*

# The wheels are bind-mounted from the build stage, so they never land in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    pip install --no-cache-dir --no-index --find-links=/wheels huifang

RUN groupadd --system --gid 10001 huifang \
    && useradd --system --uid 10001 --gid huifang --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin huifang \
    && mkdir -p /app /data/media \
    && chown -R huifang:huifang /data

ENV HUIFANG_MEDIA_ROOT=/data/media \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HUIFANG_LOG_FORMAT=json

WORKDIR /app
USER huifang
# Media files (a named volume in docker-compose.yml is mounted at /data/media and, when new,
# inherits this ownership). Durable records live in PostgreSQL, not here.
VOLUME ["/data/media"]
EXPOSE 8000

# For the api; docker-compose.yml gives workers and beat checks of their own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["tini", "--", "huifang"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
