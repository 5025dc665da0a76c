# AAMI config server image. Build from the repository root:
#   docker build -f containers/server.Dockerfile -t aami-server .
# Runs as an unprivileged user; state (the default SQLite file) in a volume.
# Set AAMI_DATABASE_URL=postgresql://... for PostgreSQL (see compose.yaml).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent/ agent/
COPY server/ server/
COPY trust/ trust/
COPY cli/ cli/
COPY bundle/ bundle/
COPY units/ units/
RUN python -m venv /opt/aami \
    && /opt/aami/bin/pip install --no-cache-dir /src

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/aami-server \
        --shell /usr/sbin/nologin aami \
    && install -d -o aami -g aami -m 0750 /var/lib/aami-server
COPY --from=build /opt/aami /opt/aami
ENV PATH=/opt/aami/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    AAMI_DATABASE_URL=sqlite:////var/lib/aami-server/aami.db
USER aami
WORKDIR /var/lib/aami-server
VOLUME ["/var/lib/aami-server"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/aami/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)"]
ENTRYPOINT ["/opt/aami/bin/aami-server"]
# Listens on all interfaces inside the container; publish the port to choose
# who reaches it. Migrations apply at start.
CMD ["serve", "--listen", "0.0.0.0:8080"]
