# Otklik as a container image: `otklik run` as a non-root user, SQLite in the /data volume by
# default, PostgreSQL by DATABASE_URL (asyncpg is installed), a healthcheck on /healthz.
#
#   docker build -t otklik .
#   docker run -d -p 8080:8080 -v otklik-data:/data otklik
#
# BASE is any Debian-like image with Python >= 3.11 and its venv module (python3 -m venv):
# python:3.12-slim by default; docs/container.md builds one from Debian's packages.
# EXTRAS are the package's extras installed with it: postgres, and redis for REDIS_URL.
ARG BASE=python:3.12-slim
ARG EXTRAS=postgres

# The dependencies, from pyproject.toml alone: layers that change with it, not with every
# change of the code. Two virtualenvs: the tools' (pip) and the product's, made without pip
# and filled by the tools' pip (--python), so that the final image has no pip at all.
FROM ${BASE} AS deps
ARG EXTRAS
RUN python3 -m venv /opt/tools \
 && python3 -m venv --without-pip /opt/otklik
WORKDIR /src
COPY pyproject.toml ./
RUN /opt/tools/bin/python -c "import sys, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [name.strip() for name in sys.argv[1].split(',') if name.strip()]; \
print('\n'.join(project['dependencies'] \
                 + [r for name in extras for r in project['optional-dependencies'][name]]))" \
        "$EXTRAS" > requirements.txt \
 && /opt/tools/bin/pip --python /opt/otklik/bin/python install --no-cache-dir \
        --disable-pip-version-check -r requirements.txt

# The product as a wheel: what a user installs, its package data as pyproject.toml declares.
FROM deps AS wheel
COPY . .
RUN /opt/tools/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
        --wheel-dir /wheels .

FROM ${BASE}
LABEL org.opencontainers.image.title="Otklik" \
      org.opencontainers.image.description="Customer-feedback surveys in Telegram, on the web and by e-mail" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --gid 10001 otklik \
 && useradd --uid 10001 --gid otklik --create-home --home-dir /home/otklik \
        --shell /usr/sbin/nologin otklik \
 && mkdir -p /data && chown otklik:otklik /data
# The dependencies in one layer, the product in a small one of its own above it: a new
# version of the code alone moves a few hundred kilobytes, not the whole virtualenv. The
# wheel is installed by the tools' pip, mounted from its stage, never copied in; --no-index:
# every dependency must be there already.
COPY --from=deps /opt/otklik /opt/otklik
ARG EXTRAS
RUN --mount=type=bind,from=wheel,source=/,target=/mnt/build \
    wheel=$(ls /mnt/build/wheels/otklik-*.whl) \
 && /mnt/build/opt/tools/bin/python -m pip --python /opt/otklik/bin/python install \
        --no-cache-dir --disable-pip-version-check --no-index "${wheel}[${EXTRAS}]" \
 && /opt/otklik/bin/otklik --help >/dev/null
# A full PATH, not $PATH: a base imported from a root file system may have none.
ENV PATH=/opt/otklik/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////data/otklik.db \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
# .env and surveys/ are read from the working directory: put them in the volume (or mount
# them there); `otklik init` writes both there.
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 8080
# Python, not curl (a slim base has none); straight to the loopback, never through a proxy
# of the environment. Exit 0 on a 200, 1 otherwise (a 503: the database is unreachable).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4); sys.exit(r.status != 200)"]
CMD ["otklik", "run"]
