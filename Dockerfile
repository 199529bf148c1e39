# syntax=docker/dockerfile:1
# The operator image: wheels built in a throwaway stage, a slim non-root runtime without build tools.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY operator ./operator
# The development harness (storage_token/dev: emulators, control plane builder, sandbox) is not
# part of the operator: it is removed from the image.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile . \
 && rm -rf /opt/venv/lib/python3.11/site-packages/storage_token/dev \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="storage-token-operator" \
      org.opencontainers.image.description="Issues scoped, expiring object-storage keys into Kubernetes Secrets" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 65532 operator \
 && useradd --system --uid 65532 --gid operator --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /opt/venv /opt/venv
COPY LICENSE /usr/share/licenses/storage-token-operator/LICENSE
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["storage-token", "run"]
