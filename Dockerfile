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
#
# Few instructions, on purpose: the legacy builder runs every instruction, ENV and WORKDIR
# included, in a container of its own and commits a layer, and on the vfs storage driver (what a
# daemon in an unprivileged CI container has) each container and each layer is a full copy of
# the file system (measured: 14 s for a WORKDIR over the build stage, 46 s over the runtime's
# venv, under load; docs/deploy.md). So the
# build stage is one COPY and one RUN, and the runtime stage sets its metadata over the bare base
# first (cheap copies) and then takes everything it runs with in one COPY.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the venv, the host firmware and the runtime's file tree (/out), in one step -------
FROM ${PYTHON_IMAGE} AS build
# the context is only pyproject.toml, README.md, service/, models/ and firmware/ (.dockerignore)
COPY . /src
# - the package and its dependencies in a virtual environment at the path it runs from
#   (/opt/fleetvote: its scripts name that interpreter), moved whole under /out: neither wheels
#   nor a pip cache nor a compiler reach the final image
# - the firmware's model sources come from `fleetvote codegen` over models/zoo (just installed)
# - the service's user: created here and its passwd/group files shipped, so that the runtime
#   stage needs no RUN (uid 10001; gid 20, dialout, the group of /dev/ttyACM* on Debian and
#   Ubuntu hosts; compose adds the host's gid with group_add where it differs)
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && python3 -m venv /opt/fleetvote \
 && /opt/fleetvote/bin/pip install --no-cache-dir /src \
 && make -C /src/firmware BOARD=host PYTHON=/opt/fleetvote/bin/python \
 && useradd --system --uid 10001 --gid dialout --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin fleetvote \
 && mkdir -p /out/opt /out/etc /out/app/models /out/app/firmware/boards \
 && mv /opt/fleetvote /out/opt/fleetvote \
 && install -D -m 0755 /src/firmware/build/host/board /out/usr/local/bin/fleetvote-board \
 && cp -r /src/models/zoo /out/app/models/zoo \
 && cp /src/firmware/boards/catalog.json /out/app/firmware/boards/catalog.json \
 && cp -p /etc/passwd /etc/group /etc/shadow /etc/gshadow /out/etc/

# ---- runtime: metadata first, then one COPY ---------------------------------------------------
FROM ${PYTHON_IMAGE}
# FLEETVOTE_CATALOG: the board catalogue the USB ids the service scans for come from
# (fleetvote.catalog)
ENV PATH=/opt/fleetvote/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLEETVOTE_CATALOG=/app/firmware/boards/catalog.json \
    FLEETVOTE_HOST=0.0.0.0 \
    FLEETVOTE_PORT=8000 \
    FLEETVOTE_ZOO=/app/models/zoo \
    FLEETVOTE_ENSEMBLE=/app/models/zoo/ensemble.json \
    FLEETVOTE_LOG_JSON=true
# the user exists once the COPY below has brought its passwd entry (nothing runs before that).
# No WORKDIR (every path the service reads comes from the variables above) and no EXPOSE (it
# publishes nothing; the compose file names port 8000 itself): about 15 s less each (vfs).
USER fleetvote
# liveness only (GET /healthz); readiness (/readyz) is the fleet's business, not the container's
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FLEETVOTE_PORT', '8000'), timeout=2)"]
CMD ["fleetvote", "serve"]
# /opt/fleetvote (the venv), /usr/local/bin/fleetvote-board, /app/models/zoo,
# /app/firmware/boards/catalog.json, /etc/passwd and /etc/group with the user
COPY --from=build /out/ /
