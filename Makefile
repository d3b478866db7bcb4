# Two commands do all the set-up on a fresh machine (Python 3.11, pip, gcc, make):
#   make run    -- a full simulated DBT exam end to end (simulated gantry embedded)
#   make test   -- the test suite
# Each creates .venv on first use. As root with apt-get (CI, containers) the test set-up also
# installs tshark, dicom3tools and orthanc, which the capture-dissector, DICOM-validation and
# DICOM-network (a real Orthanc PACS) tests use; elsewhere those tests are skipped with a note.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := $(VENV)/.system-tools
OUT ?= out

.PHONY: run test bench demo venv tools clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m crescent.numba_cache
	touch $(STAMP)

$(TOOLS): | $(STAMP)
	@if command -v tshark >/dev/null && command -v dciodvfy >/dev/null && test -x /usr/sbin/Orthanc; then \
	  echo "system tools: tshark, dciodvfy and Orthanc present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system tools: installing tshark, dicom3tools and orthanc with apt-get"; \
	  apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tshark dicom3tools orthanc >/dev/null; \
	else \
	  echo "note: tshark/dicom3tools/orthanc not installed (needs root + apt-get); their tests will be skipped"; \
	fi
	touch $(TOOLS)

venv: $(STAMP)
tools: $(TOOLS)

run: $(STAMP)
	$(BIN)/crescent acquire --out $(OUT)

demo: $(STAMP)
	$(BIN)/crescent demo

# Two pytest-xdist workers (the 2-core CI machine); groups of tests longest first (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST_ARGS ?=

test: $(STAMP) $(TOOLS)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
