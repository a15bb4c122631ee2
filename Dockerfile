# One image for the operator and every workload it starts (writer, compaction and vacuum Jobs):
#   deltaingest operator | writer | compact | vacuum | daemon ...
# Build: docker build -t ghcr.io/deltaingest/deltaingest:0.3.0 .

# uv, pinned, only to install the locked environment.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11.14-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# Dependencies first, from the lock file alone, so a source change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY operator ./operator
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="deltaingest" \
      org.opencontainers.image.description="Real-time ingest into Delta Lake tables, and their upkeep" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/deltaingest/deltaingest"
# A fixed non-root user: the rendered pods and the chart run as 10001 with a read-only root filesystem.
RUN groupadd --system --gid 10001 deltaingest \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent deltaingest
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["deltaingest"]
CMD ["--help"]
