# Everything the project needs is installed from here: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
VENV_DBT16 := .venv-dbt16
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PYTEST16 := $(VENV_DBT16)/bin/pytest
DBT16 := $(abspath $(VENV_DBT16))/bin/dbt

# The engines `make test` runs on: pgstream-lite (SQL, needs only python3) and the real Rust
# extensions pg_stream and pg_trickle (need a Rust toolchain; built once, then cached in
# ~/.cache/dbt-pgstream). `make test ENGINES=pgstream-lite` skips the real ones.
ALL_ENGINES := pgstream-lite pg_stream pg_trickle
ENGINES ?= $(ALL_ENGINES)
ENGINE ?= pgstream-lite
ifneq ($(filter-out $(ALL_ENGINES),$(ENGINES) $(ENGINE)),)
$(error unknown engine in ENGINES/ENGINE: $(filter-out $(ALL_ENGINES),$(ENGINES) $(ENGINE)); one of $(ALL_ENGINES))
endif
REAL_ENGINES := $(filter pg_stream pg_trickle,$(ENGINES))
WITH_LITE := $(filter pgstream-lite,$(ENGINES))
# What a real engine is tested with (tests/engine is pgstream-lite's own suite).
REAL_ENGINE_TESTS := tests/dbt tests/e2e/test_integration_project.py tests/e2e/test_scheduler_cli.py
RESULTS := .tmp/test-results
TIERS := $(PY) tests/tiers.py --results $(RESULTS)
EXPECTED_TIERS := lint $(if $(WITH_LITE),pgstream-lite pgstream-lite-dbt16 citus) $(REAL_ENGINES)

.PHONY: demo test test-citus test-newest test-dbt16 test-engine engines lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# The oldest supported dbt, in a venv of its own (dbt 1.6 and 1.11 cannot share one), with what
# the functional suite (tests/dbt, dbt's pytest fixtures in-process) needs: this package (its
# server, engine install and scheduler; its dependencies do not touch dbt's) and pytest.
$(VENV_DBT16)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_DBT16)
	$(VENV_DBT16)/bin/pip install --quiet --upgrade pip
	$(VENV_DBT16)/bin/pip install --quiet 'dbt-core~=1.6.0' 'dbt-postgres~=1.6.0' -e . 'pytest>=8'
	touch $@

# An older PostgreSQL major (Debian's 15) for tests/engine/test_older_postgres.py: the engine must
# install on 14+. No cluster is created or started by the package; tests start their own.
OLDER_PG := /usr/lib/postgresql/15/bin/postgres
$(OLDER_PG):
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "need Debian's postgresql-15 (sudo apt-get install postgresql-15)"; exit 1; fi
	@echo "CHANGE OUTSIDE THE REPOSITORY: create_main_cluster = false in /etc/postgresql-common/createcluster.conf (no cluster is created or started by the package)"
	mkdir -p /etc/postgresql-common
	grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf || \
	  echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
	@echo "CHANGE OUTSIDE THE REPOSITORY: apt-get install postgresql-15 (Debian's PostgreSQL 15, for tests/engine/test_older_postgres.py)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  -o Dpkg::Options::=--force-confold postgresql-15 >/dev/null

demo: $(VENV)/.installed
	$(PY) demo/run_demo.py --engine $(ENGINE)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks demo

# Every tier runs even when one fails; each records its result in $(RESULTS) (junit XML per
# tier), and the summary at the end fails the make when a tier failed, could not run (e.g. no
# Rust toolchain for a real engine) or collected no test.
# Tiers share nothing (each pytest session starts its own servers on free ports, in temp dirs),
# so TEST_JOBS of them run at once; make's --output-sync prints each tier's output whole when
# it ends. Longest first, so the two lanes end close together.
TEST_JOBS ?= 2
TIER_TARGETS := tier-lint $(if $(WITH_LITE),tier-pgstream-lite) $(addprefix tier-,$(REAL_ENGINES)) \
  $(if $(WITH_LITE),tier-pgstream-lite-dbt16 tier-citus)
.PHONY: $(TIER_TARGETS)

test: $(VENV)/.installed $(if $(WITH_LITE),$(OLDER_PG) $(VENV_DBT16)/.installed)
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target $(TIER_TARGETS) || true
	@$(TIERS) summary --expect $(EXPECTED_TIERS)

tier-lint:
	@$(TIERS) run lint -- $(VENV)/bin/ruff check src tests benchmarks demo || true
tier-pgstream-lite:
	@$(TIERS) run pgstream-lite --engine pgstream-lite -- $(PYTEST) tests --ignore=tests/citus || true
# pgstream-lite on a local Citus cluster (coordinator + 2 workers; Citus built from
# $$CITUS_SOURCE, else cloned at the pinned tag, cached in ~/.cache/dbt-pgstream): docs/citus.md.
tier-citus:
	@$(TIERS) run citus --engine pgstream-lite -- $(PYTEST) tests/citus || true
# The oldest supported dbt: the functional suite in-process on dbt 1.6, and the e2e tests marked
# dbt16 with its CLI (DBT_EXECUTABLE). The engine's scheduler is watched for 5 s instead of a
# minute in test_dropped_upstream (PGS_OBSERVE_SECONDS): the scheduler is the same engine's,
# watched for the full minute in the pgstream-lite tier; what differs here is dbt.
tier-pgstream-lite-dbt16:
	@$(TIERS) run pgstream-lite-dbt16 --engine pgstream-lite \
	  --env DBT_EXECUTABLE=$(DBT16) --env DBT_EXPECTED_VERSION=1.6 --env PGS_OBSERVE_SECONDS=5 \
	  -- $(PYTEST16) tests/dbt tests/e2e -m dbt16 || true
$(addprefix tier-,$(REAL_ENGINES)): tier-%:
	@$(TIERS) run $* --engine $* -- $(PYTEST) $(REAL_ENGINE_TESTS) || true

# One real engine's tier alone: make test-engine ENGINE=pg_trickle
test-engine: $(VENV)/.installed
	@rm -rf $(RESULTS)/$(ENGINE).*
	@$(TIERS) run $(ENGINE) --engine $(ENGINE) -- $(PYTEST) \
	  $(if $(filter pgstream-lite,$(ENGINE)),tests --ignore=tests/citus,$(REAL_ENGINE_TESTS)) || true
	@$(TIERS) summary --expect $(ENGINE)

# Build (or find cached) both real engines; prints each one's PostgreSQL prefix.
engines: $(VENV)/.installed
	$(VENV)/bin/pgstream-lite build-engine pg_stream
	$(VENV)/bin/pgstream-lite build-engine pg_trickle

test-newest: $(VENV)/.installed $(OLDER_PG)
	$(PYTEST) tests --ignore=tests/citus

# pgstream-lite on a local Citus cluster alone (tier citus).
test-citus: $(VENV)/.installed
	$(PYTEST) tests/citus

# The functional suite and the e2e tests marked dbt16 on dbt 1.6 (the tier pgstream-lite-dbt16).
test-dbt16: $(VENV_DBT16)/.installed
	DBT_EXECUTABLE=$(DBT16) DBT_EXPECTED_VERSION=1.6 $(PYTEST16) tests/dbt tests/e2e -m dbt16

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

# Stops every server (and scheduler) a demo or a test left under .pgdata (demo --keep), then
# removes what the project made in the clone. Caches outside it (~/.cache/dbt-pgstream) stay.
clean:
	@for dir in .pgdata/*/; do \
	  if [ -d "$$dir/coordinator" ] && [ -x $(VENV)/bin/pgstream-lite ]; then \
	    $(VENV)/bin/pgstream-lite cluster stop --dir "$$dir" || true; \
	  elif [ -d "$$dir" ] && [ -x $(VENV)/bin/pgstream-lite ]; then \
	    $(VENV)/bin/pgstream-lite stop --data-dir "$$dir" || true; fi; done
	rm -rf $(VENV) $(VENV_DBT16) .tmp .pgdata build
