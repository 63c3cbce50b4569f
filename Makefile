# Every target sets itself up from nothing: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python
CORE := $(VENV)/.core-installed
FULL := $(VENV)/.test-installed

.PHONY: test demo bench fuzz clean

$(CORE): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(CORE)

# The test extras include torch (pinned to the CPU build on this machine's disk) and onnx/onnxruntime,
# so the backend tests run in CI rather than skip.
$(FULL): $(CORE)
	$(PY) -m pip install --quiet -e '.[test,torch,onnx]'
	touch $(FULL)

test: $(FULL)
	$(PY) -m pytest -q -n 2

demo: $(CORE)
	$(PY) examples/demo.py

bench: $(FULL)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/run.py

# An open-ended differential fuzzing campaign: `make fuzz MINUTES=30`.
MINUTES ?= 10
fuzz: $(FULL)
	$(PY) bench/fuzz.py --minutes $(MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
