# gateway-stats: ext_proc sidecar image. Envoy itself is not in this image; run it beside it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway_stats ./gateway_stats
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway-stats
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/gateway-stats.yaml /etc/gateway-stats/config.yaml
USER 10001
EXPOSE 18080 19090
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:19090/readyz', timeout=2).status != 200)"
ENTRYPOINT ["gateway-stats", "serve"]
CMD ["--config", "/etc/gateway-stats/config.yaml", "--grpc-address", "0.0.0.0:18080", "--metrics-address", "0.0.0.0:19090"]
