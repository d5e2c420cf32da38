# The two commands of README.md. Each installs what it needs first.
.PHONY: demo test lint bench

demo:
	@./scripts/bootstrap.sh
	@.venv/bin/knhk demo

test:
	@./scripts/bootstrap.sh --services
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python scripts/architecture.py diagram --check
	.venv/bin/pytest

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python scripts/architecture.py diagram --check

bench:
	@./scripts/bootstrap.sh --bench
	@for b in bench/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done
