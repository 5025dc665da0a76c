# AAMI node agent image, for demonstrations and for testing policies against a
# real server (compose.yaml). Production nodes run the agent under systemd
# (packaging/install-agent.sh): in a container the agent sees the container's
# processes and filesystems, not the host's, and as a non-root user it runs
# scripts as itself (executor.run_as is not set).
#   docker build -f containers/agent.Dockerfile -t aami-agent .

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
RUN useradd --system --uid 10002 --user-group --home-dir /var/lib/aami-agent \
        --shell /usr/sbin/nologin aami-agent \
    && install -d -o aami-agent -g aami-agent -m 0750 /var/lib/aami-agent \
    && install -d -m 0755 /etc/aami/trusted-keys
COPY --from=build /opt/aami /opt/aami
COPY containers/agent.yaml /etc/aami/agent.yaml
ENV PATH=/opt/aami/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
USER aami-agent
WORKDIR /var/lib/aami-agent
VOLUME ["/var/lib/aami-agent"]
# AAMI_SERVER and AAMI_TOKEN (the bootstrap token, needed on first start only)
# come from the environment.
ENTRYPOINT ["/opt/aami/bin/aami-agent"]
CMD ["run", "--config", "/etc/aami/agent.yaml"]
