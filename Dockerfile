# chatdesk runner: migrate, rollup, release-idle, schedule, status, verify, serve.
#   docker build -t chatdesk .
#   docker run --rm -e DATABASE_URL=postgresql://... chatdesk migrate
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY sql ./sql
COPY migrations ./migrations
COPY tests/pgtap ./tests/pgtap
COPY tests/pgtap_helpers.sql ./tests/pgtap_helpers.sql
# A regular (non-editable) install: the SQL ships inside the package. With the
# serve extra (chatdesk serve); the project itself is what is installed, so
# there is no version to pin (DL3013 does not know extras of ".").
# hadolint ignore=DL3013
RUN pip install '.[serve]' && rm -rf /src \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin chatdesk

WORKDIR /
USER 10001
ENTRYPOINT ["chatdesk"]
CMD ["--help"]
