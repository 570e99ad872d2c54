# syntax=docker/dockerfile:1
# FinVerse Recommendation Service: one image for every process (serve, consume, train, banking-stub).
#   docker build -t finverse-reco .
#   docker run --rm -p 8000:8000 -e FINVERSE_API_KEY=... finverse-reco serve --bootstrap
ARG PYTHON_VERSION=3.11

# --- build: compile LightFM and install the package into a self-contained virtualenv --------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv && pip install --upgrade pip
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

# --- runtime: no compiler, no sources, an unprivileged user --------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# libgomp1: LightFM's OpenMP training kernel links against it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 finverse \
    && useradd --system --uid 10001 --gid finverse --home-dir /app --shell /usr/sbin/nologin finverse \
    && mkdir -p /app /data/models /data/catalog \
    && chown -R finverse:finverse /app /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    FINVERSE_HOST=0.0.0.0 \
    FINVERSE_PORT=8000 \
    FINVERSE_MODEL_DIR=/data/models \
    FINVERSE_CATALOG_PATH=/data/catalog/catalog.json \
    FINVERSE_STORE_URL=sqlite:////data/interactions.db
WORKDIR /app
USER finverse:finverse
EXPOSE 8000
# Liveness of `serve`; processes without an HTTP API (consume, train) override it in compose.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FINVERSE_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["finverse-reco"]
CMD ["serve"]
