# varad: the two commands of the README, and the steps they are made of.
#   make demo   train + score on a bundled default and write pictures of the result
#   make test   install what the tests need (into .deps/, never the system) and run them all

PYTHON_VENV := .deps/venv
PY          := $(PYTHON_VENV)/bin/python
BACKBONES   := .deps/backbones
CARGO       ?= cargo
CC          ?= cc
CXX         ?= c++
CWARN       := -Wall -Wextra -Wpedantic -Werror

.PHONY: all setup backbones build test test-rust test-c test-python test-header lint header-check demo bench synthetic clean

all: build

## setup: the Python environment (ONNX Runtime, exporters) and the bundled backbones
setup: $(PY)
	bash scripts/setup-python.sh
	@if [ -x scripts/setup-backbones.sh ]; then bash scripts/setup-backbones.sh $(BACKBONES); fi

$(PY):
	bash scripts/setup-python.sh

build:
	$(CARGO) build --release

## test: everything CI checks
test: setup lint header-check test-header test-rust test-c test-python
	@echo "make test: all checks passed"

test-rust:
	VARAD_REQUIRE_BACKBONES=1 $(CARGO) test --all-targets

test-python:
	@if [ -d scripts/tests ]; then $(PY) -m pytest scripts/tests -q; else echo "no Python tests yet"; fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## header-check: the committed include/varad.h is what build.rs generates now
header-check:
	$(CARGO) build
	@git diff --exit-code -- include/varad.h || { echo "include/varad.h is stale: commit the regenerated header"; exit 1; }

## test-header: the header compiles alone as C99 and as C++17 with strict warnings
test-header:
	printf '#include "varad.h"\nint main(void) { return varad_version_number() == VARAD_VERSION_NUMBER ? 0 : 1; }\n' > target/header_c.c
	$(CC) -std=c99 $(CWARN) -Iinclude -c target/header_c.c -o target/header_c.o
	cp target/header_c.c target/header_cpp.cpp
	$(CXX) -std=c++17 $(CWARN) -Iinclude -c target/header_cpp.cpp -o target/header_cpp.o

## test-c: C programs that link the shared library, built with strict warnings and run
C_TESTS := $(wildcard tests/c/*.c)
test-c:
	$(CARGO) build
	@mkdir -p target/c
	@set -e; for src in $(C_TESTS); do \
	  exe=target/c/$$(basename $$src .c); \
	  echo "CC $$src"; \
	  $(CC) -std=c99 $(CWARN) -Iinclude $$src -Ltarget/debug -lvarad -Wl,-rpath,$(CURDIR)/target/debug -o $$exe; \
	  $$exe; \
	done

bench: setup
	$(CARGO) bench --bench tokenizer

## demo: train on crops of a real photograph (scikit-image's bundled brick wall), score crops
## with planted defects, write heatmaps to out/demo
demo: setup
	$(CARGO) build --release --bin varad
	./target/release/varad demo --out out/demo --backbone $(BACKBONES)/efficientnet_lite0.onnx \
	  --texture "$$(ls $(PYTHON_VENV)/lib/python3*/site-packages/skimage/data/brick.png | head -n 1)"

## synthetic: a small synthetic anomaly-detection set in the MVTec AD layout, in out/synthetic
## (the default categories at 1024x1024; see scripts/README.md). Override with SYNTHETIC_ARGS.
SYNTHETIC_ARGS ?= --size 1024 --train 10 --test-good 4 --test-per-type 3 --seed 0
synthetic: $(PY)
	$(PY) scripts/make_synthetic_set.py --out out/synthetic $(SYNTHETIC_ARGS)

clean:
	$(CARGO) clean
	rm -rf .deps
