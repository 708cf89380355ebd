# varad: the two commands of the README, and the steps they are made of.
#   make demo   generate a small high-resolution set, train + score VarAD and a baseline, write the report and heatmaps
#   make test   install what the tests need (into .deps/, never the system) and run them all

PYTHON_VENV := .deps/venv
PY          := $(PYTHON_VENV)/bin/python
BACKBONES   := .deps/backbones
CARGO       ?= cargo
CC          ?= cc
CXX         ?= c++
CWARN       := -Wall -Wextra -Wpedantic -Werror

.PHONY: all setup backbones build test test-rust test-c test-python test-header lint header-check demo bench synthetic clean \
        examples examples-asan install test-install test-csharp tools

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
test: setup lint header-check test-header test-rust test-c test-python examples examples-asan test-install test-csharp
	@echo "make test: all checks passed"

test-rust:
	VARAD_REQUIRE_BACKBONES=1 $(CARGO) test --all-targets

test-python:
	@if [ -d scripts/tests ]; then $(PY) -m pytest scripts/tests -q; else echo "no Python tests yet"; fi
	$(CARGO) build
	VARAD_LIBRARY=$(CURDIR)/target/debug/libvarad.so $(PY) -m pytest bindings/python/tests -q

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

## examples: the C examples (examples-c/), strict C99, run on generated images and checked
EXAMPLES     := train score threads
EXAMPLE_BACKBONE := tests/data/tiny_vit.onnx
LINK_DEBUG   := -Ltarget/debug -lvarad -lpthread -Wl,-rpath,$(CURDIR)/target/debug
define build_examples
	$(CARGO) build
	@mkdir -p $(1)/bin
	@set -e; for ex in $(EXAMPLES); do \
	  echo "CC examples-c/$$ex.c"; \
	  $(CC) -std=c99 $(CWARN) $(2) -Iinclude examples-c/$$ex.c $(LINK_DEBUG) -o $(1)/bin/$$ex; \
	done
endef

examples:
	$(call build_examples,target/examples,)
	bash examples-c/check.sh target/examples/bin $(EXAMPLE_BACKBONE) $(PY) target/examples/run

## examples-asan: the same under AddressSanitizer and UBSan (the C side; libvarad is built
## normally). LeakSanitizer reports from inside ONNX Runtime are suppressed
## (examples-c/lsan.supp, libonnxruntime only).
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g
examples-asan:
	$(call build_examples,target/examples-asan,$(ASAN_FLAGS))
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/examples-c/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bash examples-c/check.sh target/examples-asan/bin $(EXAMPLE_BACKBONE) $(PY) target/examples-asan/run

## install: header, shared and static library, pkg-config file and CMake package
PREFIX  ?= /usr/local
PROFILE ?= release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
V_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
V_MINOR := $(word 2,$(subst ., ,$(VERSION)))
SUBST   := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(V_MAJOR)|g' -e 's|@MINOR@|$(V_MINOR)|g'
install:
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release,)
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/cmake/varad
	install -m 644 include/varad.h $(DESTDIR)$(PREFIX)/include/varad.h
	install -m 755 target/$(PROFILE)/libvarad.so $(DESTDIR)$(PREFIX)/lib/libvarad.so
	install -m 644 target/$(PROFILE)/libvarad.a $(DESTDIR)$(PREFIX)/lib/libvarad.a
	$(SUBST) packaging/varad.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/varad.pc
	$(SUBST) packaging/varadConfig.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/varad/varadConfig.cmake
	$(SUBST) packaging/varadConfigVersion.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/varad/varadConfigVersion.cmake

## test-install: install into a temporary prefix (the debug build, to reuse it), build the
## C++17 consumer in tests/install with CMake (shared and static) and with pkg-config, run them
tools:
	bash scripts/ensure-tools.sh cmake mcs mono

test-install: tools
	rm -rf target/install-test
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/target/install-test/prefix PROFILE=debug
	cmake -S tests/install -B target/install-test/build -DCMAKE_PREFIX_PATH=$(CURDIR)/target/install-test/prefix -DCMAKE_BUILD_TYPE=Release > target/install-test/cmake.log
	cmake --build target/install-test/build > target/install-test/build.log
	LD_LIBRARY_PATH=$(CURDIR)/target/install-test/prefix/lib target/install-test/build/consumer $(EXAMPLE_BACKBONE) 112
	target/install-test/build/consumer_static $(EXAMPLE_BACKBONE) 112
	PKG_CONFIG_PATH=$(CURDIR)/target/install-test/prefix/lib/pkgconfig; export PKG_CONFIG_PATH; \
	  $(CXX) -std=c++17 $(CWARN) tests/install/main.cpp $$(pkg-config --cflags --libs varad) -o target/install-test/consumer_pc && \
	  LD_LIBRARY_PATH=$(CURDIR)/target/install-test/prefix/lib target/install-test/consumer_pc $(EXAMPLE_BACKBONE) 112

## test-csharp: the C# binding (P/Invoke) built with mcs and its test run with mono
test-csharp: tools
	$(CARGO) build
	@mkdir -p target/csharp
	mcs -nologo -warnaserror -out:target/csharp/VaradTest.exe bindings/csharp/Varad.cs bindings/csharp/VaradTest.cs
	LD_LIBRARY_PATH=$(CURDIR)/target/debug mono target/csharp/VaradTest.exe $(EXAMPLE_BACKBONE)

bench: setup
	$(CARGO) bench --bench tokenizer

## demo: the README's first command. Generates a small high-resolution set (1024 x 1024
## texture photographs and a procedural surface with planted defects, pixel masks), trains
## VarAD and the PatchCore-style baseline on the bundled EfficientNet-Lite0 per category,
## scores the test images, prints the metrics table and writes the report and heatmap
## montages to out/demo.
DEMO_DATA := out/demo/data
DEMO_SET  := --size 1024 --categories brick,metal --train 10 --test-good 3 --test-per-type 1 --seed 7
demo: setup
	$(CARGO) build --release --bin varad
	@if [ "$$(cat $(DEMO_DATA)/.args 2>/dev/null)" != "$(DEMO_SET)" ]; then \
	  rm -rf $(DEMO_DATA) && $(PY) scripts/make_synthetic_set.py --out $(DEMO_DATA) $(DEMO_SET) && \
	  echo "$(DEMO_SET)" > $(DEMO_DATA)/.args; \
	fi
	./target/release/varad eval --data $(DEMO_DATA) --backbone $(BACKBONES)/efficientnet_lite0.onnx \
	  --out out/demo --method both --device auto
	@echo
	@echo "report: out/demo/report.md (and report.json); heatmaps next to the ground truth: out/demo/montage_*.png"

synthetic: $(PY)
	$(PY) scripts/make_synthetic_set.py --out out/synthetic $(SYNTHETIC_ARGS)

clean:
	$(CARGO) clean
	rm -rf .deps
