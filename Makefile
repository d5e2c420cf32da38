# The two commands of README.md. Each installs what it needs first.
.PHONY: demo test lint bench ha-drill

demo:
	@./scripts/bootstrap.sh
	@.venv/bin/knhk demo

test:
	@./scripts/bootstrap.sh --services
	.venv/bin/ruff check src tests bench deploy
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python scripts/architecture.py diagram --check
	.venv/bin/pytest -m "not serial" -n $(TEST_WORKERS) --dist loadfile
	.venv/bin/pytest -m serial

# Parallel pytest workers for the tests that assert no timing bound (the suite mostly waits on subprocesses
# and real servers, so more workers than cores helps); the `serial` ones run alone afterwards.
TEST_WORKERS ?= 2

lint:
	.venv/bin/ruff check src tests bench deploy
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python scripts/architecture.py diagram --check

bench:
	@./scripts/bootstrap.sh --bench
	@for b in bench/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

# Failover drill on a real two-node Patroni cluster (docs/disaster-recovery.md): prints RTO and RPO as JSON.
ha-drill:
	@./scripts/bootstrap.sh --services
	.venv/bin/python deploy/ha/drill.py
