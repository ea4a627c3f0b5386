# Every target builds its own virtual environment in .venv on first use.
# torch is installed first and pinned (the CPU wheel on this machine's disk); never torchvision.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test lint bench train-shapeworld rl-shapeworld clean browser serve

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	@$(PY) -c "import importlib.util as u, sys; sys.exit('torchvision must not be installed' if u.find_spec('torchvision') else 0)"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/thinkgen demo

# the browser test drives Debian's chromium; install it where we can (root with apt), else say so
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	      { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium is not installed and could not be: the browser test will be skipped"

test: $(VENV)/.installed browser
	$(VENV)/bin/ruff check thinkgen tests benchmarks
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(PY) -m pytest -q

serve: $(VENV)/.installed
	$(VENV)/bin/thinkgen serve

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	@$(PY) -c "import torch; assert torch.__version__.startswith('$(TORCH_VERSION)'), torch.__version__"
	touch $@

bench: $(VENV)/.bench
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_world.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_grpo.py

train-shapeworld: $(VENV)/.installed
	THINKGEN=$(VENV)/bin/thinkgen scripts/train_shapeworld_latent.sh

rl-shapeworld: $(VENV)/.bench
	THINKGEN=$(VENV)/bin/thinkgen scripts/rl_shapeworld.sh

clean:
	rm -rf $(VENV) build *.egg-info
