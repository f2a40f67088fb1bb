# dhcp-hotbackup: `make demo` and `make test` are the quick start (as root on Debian 12).
# Both run `make setup` first, which installs what is missing and is quick when done.

PY      := .venv/bin/python
PYTEST  := $(PY) -m pytest

.PHONY: setup demo test test-unit test-integration lint bench deb clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) -m lab.demo

test: setup lint
	@$(PYTEST) -q tests

test-unit: setup
	@$(PYTEST) -q tests/unit

# ruff; the import contracts of pyproject.toml ([tool.importlinter]); and what they
# cannot see (every module placed, pure modules importable without I/O libraries).
lint: setup
	@.venv/bin/ruff check appliance lab tests bench
	@.venv/bin/lint-imports --no-cache
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layering.py

# Each prints its figures beside the peer's (Kea, keepalived) measured in the same run.
bench: setup
	@$(PY) bench/dora_throughput.py
	@$(PY) bench/lease_memory.py
	@$(PY) bench/sync_replication.py
	@$(PY) bench/vrrp_failover.py
	@$(PY) bench/datapath_flip.py
	@$(PY) bench/failover_outage.py
	@$(PY) bench/storm.py
	@$(PY) bench/leasequery.py
	@$(PY) bench/loadsharing.py
	@$(PY) bench/vlan_takeover.py

# dist/dhcp-hotbackup_<version>_all.deb, built outside the tree; lintian must report no errors.
deb: setup
	@bash packaging/build-deb.sh

clean:
	rm -rf .venv .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
