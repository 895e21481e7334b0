# The README's commands. Everything installs into .venv from constraints.txt,
# so a fresh machine gets the versions CI tested.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test check lint bench soak clean lock

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/datatrace demo

# The whole suite (CI runs this), on 2 xdist workers; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fast loop (under a minute): every test that needs no server start-up, that is no
# Prefect server or test harness, no MariaDB or PostgreSQL, no browser. PREFECT_API_URL
# names a closed port, so a test that needs Prefect but is not marked fails at once
# instead of quietly starting a temporary server.
CHECK_MARKERS := not (prefect or prefect_server or mysql or postgres or browser)
check: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:9/api $(BIN)/python -m pytest -m "$(CHECK_MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check datatrace_tasks flows api tests bench scripts
	$(BIN)/ruff check datatrace_tasks flows api tests bench scripts
	$(BIN)/mypy datatrace_tasks api
	$(BIN)/lint-imports  # layers point down, no import circle (pyproject: tool.importlinter)
	$(BIN)/python scripts/check_sizes.py datatrace_tasks api flows  # <= 400 lines a module, 60 a function

bench: $(STAMP)
	$(BIN)/python -m bench

# The kill -9 fault test over 20 seeds (CI runs 5); needs DATATRACE_TEST_MYSQL_URL.
soak: $(STAMP)
	DATATRACE_SOAK_SEEDS=20 $(BIN)/python -m pytest -q tests/faults/test_kill.py $(PYTEST_ARGS)

# Refresh the pins after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^datatrace' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
