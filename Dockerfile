# skyphot: the web application and the analysis worker in one image (docs/deploy.md).
#   docker build -t skyphot .
#   docker run -p 5000:5000 -v skyphot-data:/data skyphot          # one machine, SQLite
#   docker compose up -d --scale worker=3                            # PostgreSQL + Celery
FROM python:3.11-slim-bookworm

# The astronomy tools behind the engine's optional adapters, with the Tycho-2 index files
# for astrometry.net: exactly the Makefile's APT_PACKAGES without Chromium (only the page
# tests need a browser). tests/deploy/test_container_files.py keeps the two lists in step.
ARG ANALYSIS_PACKAGES="source-extractor scamp psfex swarp astrometry.net astrometry-data-tycho2-08"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${ANALYSIS_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1
ENV PYTHONDONTWRITEBYTECODE=1
ENV PIP_NO_CACHE_DIR=1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1

# A regular (non-editable) install: the templates, static files and migrations are package
# data. pip only warns about an extra this version does not define.
ARG SKYPHOT_EXTRAS="web,online,postgres,celery"
COPY pyproject.toml README.md /tmp/skyphot/
COPY src /tmp/skyphot/src
RUN pip install "/tmp/skyphot[${SKYPHOT_EXTRAS}]" && rm -rf /tmp/skyphot
# Bytecode for the package, whatever the installer did: with PYTHONDONTWRITEBYTECODE set, a
# module without it is compiled again by every process (~0.1 s of each `skyphot measure`).
RUN python -m compileall -q "$(python -c 'import pathlib, skyphot; print(pathlib.Path(skyphot.__file__).parent)')" >/dev/null

# Never run as root: data and uploads belong to an unprivileged user (named volumes mounted
# there take this ownership when first created).
RUN groupadd --system --gid 10001 skyphot \
 && useradd --system --uid 10001 --gid skyphot --home-dir /home/skyphot --create-home \
      --shell /usr/sbin/nologin skyphot \
 && mkdir -p /data /uploads \
 && chown skyphot:skyphot /data /uploads

ENV SKYPHOT_DATA_DIR=/data
ENV SKYPHOT_UPLOAD_DIR=/uploads
ENV SKYPHOT_PORT=5000
USER skyphot
WORKDIR /home/skyphot
VOLUME ["/data", "/uploads"]
EXPOSE 5000

# The login page answers without a session once the server has migrated the database and
# started; a worker container disables this check (docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SKYPHOT_PORT', '5000') + '/api/info', timeout=4)"]

CMD ["skyphot", "serve", "--host", "0.0.0.0"]
