# tinyhil: the two commands a fresh machine needs are `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE := examples/conv1d_har.tflite

.PHONY: setup demo test example clean doctor fresh-check

setup:                    ## apt packages, virtualenv, offline PlatformIO (idempotent)
	bash scripts/setup.sh

$(EXAMPLE): examples/make_conv1d_har.py host/tinyhil/models/convert.py
	$(BIN)/python examples/make_conv1d_har.py $@

example: setup $(EXAMPLE)

demo: setup              ## install everything, then search -> deploy -> measure on the emulated Cortex-M4
	$(BIN)/tinyhil pipeline --engine micronas --data japanese_vowels --board qemu-m4 \
	    --latency 110ms --memory 32KB --search-epochs 20 --epochs 30 --qat-epochs 5

# Test files spread over one worker per core (at most 4: each worker holds TensorFlow,
# 1-2 GB); a file's tests stay on one worker, so its module fixtures (a booted board) are made once.
test: setup               ## the whole test suite (device tests boot QEMU)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

doctor: setup             ## every tool's version; probe firmware built and booted per emulated board
	$(BIN)/tinyhil doctor

fresh-check:              ## the two commands above in a clean Debian root (root, slow; not in CI)
	bash scripts/fresh-check.sh

clean:
	rm -rf .pio .tinyhil $(EXAMPLE)
