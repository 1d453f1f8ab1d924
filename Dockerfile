# gateway-stats: the ext_proc sidecar image. Envoy is not in it: run Envoy beside it (deploy/kubernetes).
#
#   docker build -t gateway-stats:0.1.0 .
#   docker build --build-arg EXTRAS=records,analytics -t gateway-stats:0.1.0-full .
#
# EXTRAS names optional dependency groups of pyproject.toml ([project.optional-dependencies]), comma-
# separated; empty (the default) installs the core only. Both stages use the same pinned base, so the
# virtualenv built in the first runs unchanged in the second; every dependency used here ships wheels,
# so no compiler is installed in either stage.

FROM python:3.11.14-slim-bookworm AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway_stats ./gateway_stats
RUN python -m venv /opt/gateway-stats \
 && /opt/gateway-stats/bin/pip install --prefer-binary "/src${EXTRAS:+[$EXTRAS]}" \
 && /opt/gateway-stats/bin/gateway-stats --version

FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin gateway-stats
COPY --from=build /opt/gateway-stats /opt/gateway-stats
COPY config/gateway-stats.yaml /etc/gateway-stats/config.yaml
ENV PATH=/opt/gateway-stats/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Relative records paths (the example config's `records: {sqlite: records.db}`) land in the working
# directory, writable by the user; mount a volume there to keep them.
RUN mkdir -p /var/lib/gateway-stats && chown 10001:10001 /var/lib/gateway-stats
WORKDIR /var/lib/gateway-stats
USER 10001:10001
# 18080: ext_proc gRPC (TCP; the Kubernetes base uses a Unix socket instead); 19090: /metrics /healthz /readyz
EXPOSE 18080 19090
HEALTHCHECK --interval=10s --timeout=2s CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:19090/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["gateway-stats", "serve"]
CMD ["--config", "/etc/gateway-stats/config.yaml", "--grpc-address", "0.0.0.0:18080", "--metrics-address", "0.0.0.0:19090"]
