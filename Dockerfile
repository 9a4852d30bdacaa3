# The fleetvote service, slim: the package without its `train` extra (no TensorFlow), the zoo's
# int8 models, and the host build of the firmware (`fleetvote-board`, a virtual board for the
# compose file's `virtual` profile). See docs/deploy.md.
#
#   docker build -t fleetvote .
#   docker compose up -d                      # or: docker compose --profile virtual up -d
#
# Plain multi-stage instructions only (no RUN --mount, no heredocs): it builds with BuildKit and
# with the legacy builder alike (Debian's docker.io has no buildx). `make test-containers`
# builds and runs it (tests/containers.py).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the package and its dependencies in a venv, then the host firmware --------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service service
COPY models models
# the package and its dependencies in a virtual environment that the runtime stage copies whole:
# neither wheels nor a pip cache nor a compiler reach the final image
RUN python3 -m venv /opt/fleetvote \
 && /opt/fleetvote/bin/pip install --no-cache-dir .
# the firmware's model sources come from `fleetvote codegen` over models/zoo (just installed)
COPY firmware firmware
RUN make -C firmware BOARD=host PYTHON=/opt/fleetvote/bin/python \
 && install -D -m 0755 firmware/build/host/board /out/fleetvote-board

# ---- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# the service runs as an unprivileged user in group dialout (gid 20 on Debian and Ubuntu hosts,
# the group of /dev/ttyACM*; compose adds the host's gid with group_add where it differs)
RUN useradd --system --uid 10001 --gid dialout --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin fleetvote
COPY --from=build /opt/fleetvote /opt/fleetvote
COPY --from=build /out/fleetvote-board /usr/local/bin/fleetvote-board
COPY models/zoo /app/models/zoo
# the board catalogue: the USB ids the service scans for come from it (fleetvote.catalog)
COPY firmware/boards/catalog.json /app/firmware/boards/catalog.json
ENV PATH=/opt/fleetvote/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLEETVOTE_CATALOG=/app/firmware/boards/catalog.json \
    FLEETVOTE_HOST=0.0.0.0 \
    FLEETVOTE_PORT=8000 \
    FLEETVOTE_ZOO=/app/models/zoo \
    FLEETVOTE_ENSEMBLE=/app/models/zoo/ensemble.json \
    FLEETVOTE_LOG_JSON=true
WORKDIR /app
USER fleetvote
EXPOSE 8000
# liveness only (GET /healthz); readiness (/readyz) is the fleet's business, not the container's
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FLEETVOTE_PORT', '8000'), timeout=2)"]
CMD ["fleetvote", "serve"]
