# The commands people type. `make demo` and `make test` work on a fresh machine.
.PHONY: setup demo test lint bench clean

EXAMPLE ?= examples/astronaut.jpg
EXAMPLE_MASK ?= examples/astronaut_mask.png

setup:
	scripts/setup.sh demo

demo: setup
	.venv/bin/edgefill inpaint $(EXAMPLE) --mask $(EXAMPLE_MASK) -o out/example_inpainted.png --edges-out out/example_edges.png --overwrite

lint:
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/ruff format --check src tests benchmarks scripts
	.venv/bin/lint-imports

test:
	scripts/setup.sh test
	$(MAKE) lint
	.venv/bin/python -m pytest -q tests

bench:
	.venv/bin/python benchmarks/evaluate_default.py
	.venv/bin/python benchmarks/bench_inference.py

clean:
	rm -rf out test-artifacts .pytest_cache .ruff_cache .import_linter_cache
