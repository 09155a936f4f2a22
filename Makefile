# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The pre-seeded CPU wheel first; pyproject only asks for torch>=2.4, so it stays.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[demo,heldout,test,tensorboard,export,docs,measured,cluster]"
	# fastMRI's own models for the parity tests (tests/models/test_fastmri_parity.py): without its
	# pinned dependencies (Lightning etc.), which its models never import; what they do import
	# (numpy, h5py, pyyaml, tqdm, pandas, requests) comes with the test extra.
	$(PY) -m pip install --quiet --no-deps fastmri==0.3.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mrdistill demo --preset quick --out runs/demo

# Two test workers with one thread each: more threads than cores makes OpenMP spin and crawl.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 tests

# The API reference and guides as a site in site/ (tests/docs/test_site.py builds it in make test).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: $(STAMP)
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) runs site
