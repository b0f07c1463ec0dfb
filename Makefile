# Everything the project needs is installed from here: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
VENV_DBT16 := .venv-dbt16
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
DBT16 := $(abspath $(VENV_DBT16))/bin/dbt

.PHONY: demo test test-newest test-dbt16 lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# The oldest supported dbt, in a venv of its own (dbt 1.6 and 1.11 cannot share one).
$(VENV_DBT16)/.installed:
	$(PYTHON) -m venv $(VENV_DBT16)
	$(VENV_DBT16)/bin/pip install --quiet --upgrade pip
	$(VENV_DBT16)/bin/pip install --quiet 'dbt-core~=1.6.0' 'dbt-postgres~=1.6.0'
	touch $@

# An older PostgreSQL major (Debian's 15) for tests/engine/test_older_postgres.py: the engine must
# install on 14+. No cluster is created or started by the package; tests start their own.
OLDER_PG := /usr/lib/postgresql/15/bin/postgres
$(OLDER_PG):
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "need Debian's postgresql-15 (sudo apt-get install postgresql-15)"; exit 1; fi
	mkdir -p /etc/postgresql-common
	grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf || \
	  echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  -o Dpkg::Options::=--force-confold postgresql-15 >/dev/null

demo: $(VENV)/.installed
	$(PY) demo/run_demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks demo

test: lint test-newest test-dbt16

test-newest: $(VENV)/.installed $(OLDER_PG)
	$(PYTEST) tests

# The integration project (and the dispatch-based freshness check) on dbt 1.6.
test-dbt16: $(VENV)/.installed $(VENV_DBT16)/.installed
	DBT_EXECUTABLE=$(DBT16) DBT_EXPECTED_VERSION=1.6 $(PYTEST) tests/e2e -m dbt16

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(VENV_DBT16) .tmp
