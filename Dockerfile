# The wes-arvados server's image. `python3 deploy/build_image.py` makes what it is built from, with
# no network: the base (a Debian rootfs from debootstrap: Python, Node.js for CWL expressions, tini)
# and a wheelhouse of the project and its packages (pip wheel on the host). No compiler, no Docker.
ARG BASE=wes-arvados-base:bookworm

FROM ${BASE} AS build
COPY wheels /wheels
RUN python3 -m venv /opt/wes-arvados \
 && /opt/wes-arvados/bin/pip install --no-index --find-links /wheels --no-cache-dir -q 'wes-arvados[server]' \
 && /opt/wes-arvados/bin/pip uninstall -y -q pip \
 && /opt/wes-arvados/bin/python -m compileall -q /opt/wes-arvados/lib

FROM ${BASE}
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=https://github.com/arvados/wes-arvados
LABEL org.opencontainers.image.title="wes-arvados" \
      org.opencontainers.image.description="GA4GH WES 1.1 server for CWL workflows on Arvados, no Docker needed" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/wes-arvados /opt/wes-arvados
RUN groupadd --gid 10001 wes \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/wes-arvados --no-create-home --shell /usr/sbin/nologin wes \
 && mkdir -p /var/lib/wes-arvados /var/cache/wes-arvados \
 && chown wes:wes /var/lib/wes-arvados /var/cache/wes-arvados
# The root filesystem may be read-only: state, cache and /tmp are volumes; no bytecode is written.
ENV PATH=/opt/wes-arvados/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    WES_ARVADOS_STATE_DIR=/var/lib/wes-arvados \
    WES_ARVADOS_IMAGES_CACHE_DIR=/var/cache/wes-arvados/images
VOLUME ["/var/lib/wes-arvados", "/var/cache/wes-arvados", "/tmp"]
USER 10001:10001
EXPOSE 8080
# tini reaps what the server's sessions leave (run supervisors, image pulls outlive their parents).
ENTRYPOINT ["/usr/bin/tini", "--", "wes-arvados"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
