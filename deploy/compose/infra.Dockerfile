# The two third-party servers of the compose deployment (docker-compose.yml), built offline like the service images
# (deploy/images/Dockerfile): from the debootstrap base and a build context of wheels that build-images.sh fetched
# with pip; the Docker build itself runs with --network none. No registry image is pulled.
#
#   oxigraph-server  the central graph store: Oxigraph server 0.5.13, the binary of PyPI's `oxigraph` wheel (the
#                    same server the tests start, tests/servers.py); `oxigraph serve` on a volume
#   s3-server        the object store released outputs travel through: moto's S3 server (PyPI `moto[server]`),
#                    objects in memory. A consortium replaces it with MinIO or its cloud's S3 (docs/deployment.md)
ARG BASE_IMAGE=pht/python-base:bookworm

FROM ${BASE_IMAGE} AS venv
USER 0:0
COPY tools/pip.whl /build/pip.whl
COPY wheels/ /build/wheels/
RUN python3 -m venv --without-pip /opt/infra \
 && /opt/infra/bin/python /build/pip.whl/pip install --quiet --no-index --no-deps --no-cache-dir \
      --disable-pip-version-check --compile /build/wheels/*.whl \
 && /opt/infra/bin/oxigraph --version && /opt/infra/bin/python -c "import moto.server, flask"

FROM ${BASE_IMAGE} AS root
USER 0:0
RUN set -eu; \
    groupadd --gid 10003 infra; \
    useradd --uid 10003 --gid 10003 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin infra; \
    install -d -o 10003 -g 10003 -m 0700 /var/lib/oxigraph; \
    rm -rf /usr/bin/apt* /usr/lib/apt /etc/apt /var/lib/apt /var/cache/apt /usr/bin/dpkg* /usr/lib/dpkg \
           /var/lib/dpkg /usr/bin/perl* /usr/share/doc /usr/share/man; \
    find / -xdev -type f -perm /6000 -exec chmod ug-s {} +

FROM scratch AS system
COPY --from=root / /
COPY --from=root --chown=10003:10003 /var/lib/oxigraph /var/lib/oxigraph
COPY --from=venv /opt/infra /opt/infra
ENV PATH=/opt/infra/bin:/usr/local/bin:/usr/bin:/bin HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
WORKDIR /tmp
USER 10003:10003

FROM system AS oxigraph-server
VOLUME ["/var/lib/oxigraph"]
EXPOSE 7878
# a SPARQL ASK through the query endpoint: the store answers, not only the port
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 CMD ["python3", "-c", "import urllib.request as u, urllib.parse as p; u.urlopen('http://127.0.0.1:7878/query?' + p.urlencode({'query': 'ASK {}'}), timeout=3)"]
CMD ["oxigraph", "serve", "--location", "/var/lib/oxigraph", "--bind", "0.0.0.0:7878"]

FROM system AS s3-server
EXPOSE 9000
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9000/', timeout=3)"]
CMD ["moto_server", "-H", "0.0.0.0", "-p", "9000"]
