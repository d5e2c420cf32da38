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
	@.venv/bin/python -m compileall -q src
	.venv/bin/pytest -m "not serial" -n $(TEST_WORKERS) --dist loadfile
	.venv/bin/pytest -m serial

# `make test` writes the package's bytecode once (compileall), so the hundreds of `knhk` processes the tests start
# do not each compile it again: where PYTHONDONTWRITEBYTECODE is set no process writes it (~0.1 s CPU a start).
#
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
