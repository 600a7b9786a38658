# Wraparound gateway: the same entry point as `wraparound serve` outside a container.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY connectors ./connectors
COPY mappings ./mappings
COPY vocab ./vocab
RUN python -m venv /opt/wraparound && /opt/wraparound/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/wraparound/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WRAPAROUND_ENV=production \
    WRAPAROUND_HOST=0.0.0.0 \
    WRAPAROUND_PORT=8080 \
    WRAPAROUND_DATA_DIR=/var/lib/wraparound
RUN groupadd --system wraparound && useradd --system --gid wraparound --home-dir /var/lib/wraparound wraparound \
    && mkdir -p /var/lib/wraparound && chown wraparound:wraparound /var/lib/wraparound
COPY --from=build /opt/wraparound /opt/wraparound
COPY fixtures /opt/wraparound/fixtures
USER wraparound
WORKDIR /var/lib/wraparound
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
# The same image runs the outbox workers: `docker run ... wraparound worker --threads 4`
# (as many containers as needed against one PostgreSQL database; no port, no healthcheck needed).
CMD ["wraparound", "serve"]
