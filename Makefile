# tinyhil: the two commands a fresh machine needs are `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE := examples/conv1d_har.tflite

.PHONY: setup demo test example clean

setup:                    ## apt packages, virtualenv, offline PlatformIO (idempotent)
	bash scripts/setup.sh

$(EXAMPLE): examples/make_conv1d_har.py host/tinyhil/bench/convert.py
	$(BIN)/python examples/make_conv1d_har.py $@

example: setup $(EXAMPLE)

demo: setup $(EXAMPLE)    ## install everything, measure the example model on the emulated Cortex-M4
	$(BIN)/tinyhil run $(EXAMPLE) --board qemu-m4 --repeat 20

test: setup               ## the whole test suite (device tests boot QEMU)
	$(BIN)/python -m pytest -q

clean:
	rm -rf .pio .tinyhil $(EXAMPLE)
