# syntax=docker/dockerfile:1
# AvatarGateway images (docs/deployment.md):
#   default target `gateway`: the gRPC gateway, production mode (`avatar-gateway serve`). It
#   refuses to start until the gRPC transport is chosen: AVATAR_GATEWAY_TLS_CERT_FILE and
#   _TLS_KEY_FILE (mounted PEM files), or AVATAR_GATEWAY_PLAINTEXT=true explicitly;
#   target `emulator`: the vendor emulators (`avatar-gateway emulate <vendor>`), for compose
#   stacks and staging clusters, never for production.
# Build: docker build -t avatar-gateway .   (podman: add --format docker to keep HEALTHCHECK)
# Without a registry (our CI): --build-arg BASE_IMAGE=localhost/debian-python:bookworm, made by
# tools/containers_setup.sh.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: one virtual environment from the pinned constraints ---------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY clients/python clients/python
COPY core core
COPY gateway gateway
COPY adapters adapters
COPY emulators emulators
# Every dependency is a wheel for CPython 3.11 on linux (no compiler in any stage); the API
# package comes from this repository's path, never from the public index by name.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -q -c constraints.txt ./clients/python .

# pip and setuptools are not needed at run time: each venv leaves them behind.
FROM build AS venv-gateway
RUN /opt/venv/bin/pip uninstall -q -y pip setuptools

FROM build AS venv-emulator
RUN /opt/venv/bin/pip install -q -c constraints.txt '.[sandbox]' \
 && /opt/venv/bin/pip uninstall -q -y pip setuptools

# ---- runtime base: no compilers, no pip, non-root, read-only root filesystem works -------
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AVATAR_GATEWAY_LISTEN=0.0.0.0:50051 \
    AVATAR_GATEWAY_CALLBACKS_LISTEN=0.0.0.0:8080 \
    AVATAR_GATEWAY_OPS_LISTEN=0.0.0.0:8081 \
    AVATAR_GATEWAY_LOG_FORMAT=json
# A numeric uid needs no passwd entry; Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
STOPSIGNAL SIGTERM

FROM runtime AS emulator
COPY --from=venv-emulator /opt/venv /opt/venv
ENTRYPOINT ["avatar-gateway", "emulate"]

# ---- the gateway (default target: last stage) --------------------------------------------
FROM runtime AS gateway
COPY --from=venv-gateway /opt/venv /opt/venv
# 50051 gRPC (TLS, mutual TLS, or plaintext when chosen); 8080 the public callbacks listener
# (/callbacks/<vendor> only); 8081 the internal ops listener (/metrics, /healthz, /livez): do not
# publish 8081 beyond the host or cluster.
EXPOSE 50051 8080 8081
# `avatar-gateway health`: GET http://127.0.0.1:<ops port>/healthz (AVATAR_GATEWAY_OPS_LISTEN),
# healthy on 200 only: 503 while starting and from the first moment of a drain. HTTP on the ops
# listener rather than gRPC health, which would need the TLS client certificate under mTLS.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["avatar-gateway", "health"]
ENTRYPOINT ["avatar-gateway"]
CMD ["serve"]
