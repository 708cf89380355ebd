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

.PHONY: all setup backbones build test test-rust test-c test-python test-header lint header header-check symbols demo results results-36 bench synthetic clean \
        examples examples-asan install install-files test-install test-csharp package test-package tools windows symbols-windows windows-toolchain windows-test-setup test-windows test-c-asan test-old-client valgrind fuzz fuzz-build fuzz-smoke

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
test: setup lint header-check test-header symbols test-rust test-c test-c-asan test-old-client test-python examples examples-asan test-install test-csharp symbols-windows test-windows test-package
	@echo "make test: all checks passed"

test-rust:
	VARAD_REQUIRE_BACKBONES=1 $(CARGO) test --workspace --exclude xtask --all-targets --features varad/internals

test-python:
	@if [ -d scripts/tests ]; then $(PY) -m pytest scripts/tests -q; else echo "no Python tests yet"; fi
	$(CARGO) build
	VARAD_LIBRARY=$(CURDIR)/target/debug/libvarad.so $(PY) -m pytest bindings/python/tests -q

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --features varad/internals -- -D warnings
	$(CARGO) clippy --lib -- -D warnings

## header: write include/varad.h from xtask/varad.h.in and src/ffi/ with the pinned
## cbindgen (xtask/Cargo.toml). The library's own build never runs cbindgen.
header:
	$(CARGO) run --quiet -p xtask -- header

## header-check: the committed include/varad.h is what `make header` writes now
header-check:
	$(CARGO) run --quiet -p xtask -- header --check

## symbols: the shared library exports the C ABI's varad_* functions and nothing else,
## and exactly the functions the header declares
symbols:
	$(CARGO) build --release --lib
	@nm -D --defined-only target/release/libvarad.so | awk '{print $$3}' | sort > target/exported-symbols.txt
	@grep -v -e '^ *//' -e '^ *[/]*\*' include/varad.h | sed -n 's/.*\b\(varad_[a-z0-9_]*\)(.*/\1/p' | sort -u > target/declared-symbols.txt
	@if grep -v '^varad_' target/exported-symbols.txt; then echo "libvarad.so exports symbols outside varad_* (above)"; exit 1; fi
	@diff -u target/declared-symbols.txt target/exported-symbols.txt || { echo "the header's functions and libvarad.so's exports differ (- declared only, + exported only)"; exit 1; }
	@echo "libvarad.so exports exactly the $$(wc -l < target/exported-symbols.txt) varad_* functions include/varad.h declares"

## windows: varad.dll cross-built for Windows x64 with Rust's x86_64-pc-windows-gnu target
## and MinGW, into target/windows/: bin/varad.dll, lib/libvarad.dll.a (MinGW's import
## library), lib/varad.def and lib/varad.lib (the import library MSVC's link.exe takes,
## written by MinGW's dlltool from the .def). The toolchain comes from rustup and Debian
## (windows-toolchain). WINDOWS_PROFILE=debug builds the debug DLL instead.
WIN_TARGET      := x86_64-pc-windows-gnu
WINDOWS_PROFILE ?= release
WIN_OUT         := target/windows
WIN_BUILD       := target/$(WIN_TARGET)/$(WINDOWS_PROFILE)
windows-toolchain: tools
	@rustup target list --installed 2>/dev/null | grep -qx $(WIN_TARGET) || rustup target add $(WIN_TARGET)
	bash scripts/ensure-tools.sh x86_64-w64-mingw32-gcc

windows: windows-toolchain
	$(CARGO) build --lib --target $(WIN_TARGET) $(if $(filter release,$(WINDOWS_PROFILE)),--release,)
	@mkdir -p $(WIN_OUT)/bin $(WIN_OUT)/lib
	cp $(WIN_BUILD)/varad.dll $(WIN_OUT)/bin/varad.dll
	cp $(WIN_BUILD)/libvarad.dll.a $(WIN_OUT)/lib/libvarad.dll.a
	@{ echo "LIBRARY varad.dll"; echo "EXPORTS"; \
	   x86_64-w64-mingw32-objdump -p $(WIN_OUT)/bin/varad.dll | \
	   awk '/\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && /^\t\[/ {print "    " $$NF; next} t {t=0}'; \
	 } > $(WIN_OUT)/lib/varad.def
	x86_64-w64-mingw32-dlltool -m i386:x86-64 -d $(WIN_OUT)/lib/varad.def -D varad.dll -l $(WIN_OUT)/lib/varad.lib
	@echo "windows: $(WIN_OUT)/bin/varad.dll ($(WINDOWS_PROFILE)), import libraries and .def in $(WIN_OUT)/lib"

## symbols-windows: varad.dll exports exactly the header's varad_* functions, and imports
## only DLLs every Windows has (no MinGW runtime such as libgcc_s_seh-1.dll or
## libwinpthread-1.dll, which a user's machine would lack)
WIN_SYSTEM_DLLS := kernel32 ntdll msvcrt advapi32 bcrypt bcryptprimitives userenv ws2_32 ole32 oleaut32 shell32 user32 api-ms-win-core-[a-z0-9-]*
symbols-windows: windows
	@x86_64-w64-mingw32-objdump -p $(WIN_OUT)/bin/varad.dll > target/windows-objdump.txt
	@awk '/\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && /^\t\[/ {print $$NF; next} t {t=0}' target/windows-objdump.txt | sort > target/windows-exported.txt
	@grep -v -e '^ *//' -e '^ *[/]*\*' include/varad.h | sed -n 's/.*\b\(varad_[a-z0-9_]*\)(.*/\1/p' | sort -u > target/declared-symbols.txt
	@diff -u target/declared-symbols.txt target/windows-exported.txt || { echo "the header's functions and varad.dll's exports differ (- declared only, + exported only)"; exit 1; }
	@sed -n 's/^\tDLL Name: //p' target/windows-objdump.txt | tr 'A-Z' 'a-z' | sort -u > target/windows-imports.txt
	@if grep -v -x -E '($(shell echo $(WIN_SYSTEM_DLLS) | sed 's/ /|/g'))\.dll' target/windows-imports.txt; then \
	  echo "varad.dll imports the DLLs above, which are not part of Windows"; exit 1; fi
	@echo "varad.dll exports exactly the $$(wc -l < target/windows-exported.txt) varad_* functions include/varad.h declares and imports only system DLLs: $$(tr '\n' ' ' < target/windows-imports.txt)"

## test-windows: the Windows build under Wine 8 (wine64), in a prefix of its own
## (target/wine-prefix, never ~/.wine) with onnxruntime.dll from the win_amd64 wheel of the
## pinned onnxruntime (.deps/windows/; tests/windows/setup.sh makes both, once):
##   - the C API tests (tests/c/), the examples (examples-c/check.sh), the old client and a
##     UTF-8 path test (tests/windows/utf8_path.c), cross-built with MinGW and linked
##     -static (no MinGW runtime DLL beside them; varad.dll itself needs none, see
##     symbols-windows), run from a folder holding varad.dll and onnxruntime.dll with
##     ORT_DYLIB_PATH unset: ONNX Runtime is found beside varad.dll;
##   - maps and decisions of the Windows build equal to the Linux build's (debug
##     libvarad.so) on the same images, for a model trained on Linux and one trained on
##     Windows, each loaded on the other platform (tests/windows/maps.c, compare_maps.py);
##   - every public struct's size and field offsets the same for MinGW (LLP64) as for
##     Linux (LP64) (tests/windows/layout.py);
##   - the library's unit tests and the integration tests about files, paths, threads and
##     the runtime loader, with wine as cargo's runner for the Windows target.
## The C programs run against the DLL that is shipped: the release build of `make
## windows`, which symbols-windows builds anyway (the debug DLL would add a second
## library build for nothing). The Rust tests build in the test profile, as on Linux.
## Cost on 2 cores: the release DLL about 2 minutes and the Windows test binaries about
## 4 from a clean target/, the prefix and the wheel about 20 s once, the runs under Wine
## about 45 s.
## The CUDA emulator's unit tests are skipped under Wine: they compile a C++ kernel
## emulator with the host's C++ compiler into a .so and load it, which a Windows test
## process cannot. On ONNX Runtime 1.23 for Windows, "Failed to create DXGI factory." on
## stderr is its GPU device discovery finding no DirectX under Wine, not an error.
WIN_TEST   := target/windows-test
WIN_CC     := x86_64-w64-mingw32-gcc -std=c99 $(CWARN) -static
WINE_RUN   := $(CURDIR)/tests/windows/wine-run.sh
ORT_WIN    := .deps/windows
# Maps of the same model on the same images, Windows vs Linux, relative to each map's
# largest value; the same bound for scores. Measured: one model scored on both, no
# difference at all; a model trained on each (same images, same order), 3e-7.
MAP_TOLERANCE := 1e-5
WIN_RUST_TESTS := model_file crash_safety concurrency shared_sessions score_threads backbone image_files ffi resource_limits

windows-test-setup: windows-toolchain $(PY)
	bash scripts/ensure-tools.sh wine
	bash tests/windows/setup.sh $(PY)

test-windows: windows windows-test-setup
	$(CARGO) build
	@rm -rf $(WIN_TEST)/bin && mkdir -p $(WIN_TEST)/bin $(WIN_TEST)/linux $(WIN_TEST)/old-client/include target/c target/old-client
	cp $(WIN_OUT)/bin/varad.dll $(ORT_WIN)/*.dll $(WIN_TEST)/bin/
	@set -e; for src in $(C_TESTS) $(addprefix examples-c/,$(addsuffix .c,$(EXAMPLES))) tests/windows/utf8_path.c tests/windows/maps.c; do \
	  echo "CC (mingw) $$src"; \
	  $(WIN_CC) -Iinclude -Itests/c $$src $(WIN_OUT)/lib/libvarad.dll.a -lpthread -o $(WIN_TEST)/bin/$$(basename $$src .c).exe; \
	done
	$(PY) tests/old_client/make_old_header.py include/varad.h $(WIN_TEST)/old-client/include/varad.h
	$(WIN_CC) -I$(WIN_TEST)/old-client/include -Itests/c tests/old_client/old_client.c $(WIN_OUT)/lib/libvarad.dll.a -o $(WIN_TEST)/bin/old_client.exe
	@set -e; unset ORT_DYLIB_PATH; for t in $(basename $(notdir $(C_TESTS))) old_client; do \
	  echo "wine $$t"; $(WINE_RUN) $(WIN_TEST)/bin/$$t.exe; \
	done
	unset ORT_DYLIB_PATH; EXAMPLE_RUNNER=$(WINE_RUN) bash examples-c/check.sh $(WIN_TEST)/bin $(EXAMPLE_BACKBONE) $(PY) $(WIN_TEST)/examples
	unset ORT_DYLIB_PATH; $(WINE_RUN) $(WIN_TEST)/bin/utf8_path.exe $(WIN_TEST) $(EXAMPLE_BACKBONE) $(WIN_TEST)/examples/images/test/defect.png
	@test -s "$(WIN_TEST)/Prüfstand-検査/modell-ü.varad" || { echo "utf8_path: no model file under its UTF-8 name on the Linux side"; exit 1; }
	@# Linux and Windows on the same images: a model trained by each, scored by both.
	@set -e; for src in examples-c/train.c tests/windows/maps.c; do \
	  $(CC) -std=c99 $(CWARN) -Iinclude $$src $(LINK_DEBUG) -o $(WIN_TEST)/linux/$$(basename $$src .c); \
	done
	@rm -rf $(WIN_TEST)/compare && mkdir -p $(WIN_TEST)/compare
	$(WIN_TEST)/linux/train --input 112 --epochs 3 $(EXAMPLE_BACKBONE) $(WIN_TEST)/examples/images/good $(WIN_TEST)/compare/linux.varad > $(WIN_TEST)/compare/train-linux.log
	cp $(WIN_TEST)/examples/model.varad $(WIN_TEST)/compare/windows.varad
	@set -e; unset ORT_DYLIB_PATH; for model in linux windows; do \
	  out=$(WIN_TEST)/compare/$$model-trained; \
	  $(WIN_TEST)/linux/maps $(WIN_TEST)/compare/$$model.varad $$out.on-linux.txt $(WIN_TEST)/examples/images/*/*.png; \
	  $(WINE_RUN) $(WIN_TEST)/bin/maps.exe $(WIN_TEST)/compare/$$model.varad $$out.on-windows.txt $(WIN_TEST)/examples/images/*/*.png; \
	  echo "model trained on $$model, scored on Linux and on Windows:"; \
	  $(PY) tests/windows/compare_maps.py $(MAP_TOLERANCE) $$out.on-linux.txt $$out.on-windows.txt; \
	done
	@echo "models trained on Linux and on Windows, each scored on its own platform:"
	$(PY) tests/windows/compare_maps.py $(MAP_TOLERANCE) $(WIN_TEST)/compare/linux-trained.on-linux.txt $(WIN_TEST)/compare/windows-trained.on-windows.txt
	@# The ABI's layout: LLP64 (MinGW) as LP64 (Linux).
	$(PY) tests/windows/layout.py include/varad.h $(WIN_TEST)/layout.c
	$(CC) -std=c99 $(CWARN) -Iinclude $(WIN_TEST)/layout.c -o $(WIN_TEST)/linux/layout
	$(WIN_CC) -Iinclude $(WIN_TEST)/layout.c -o $(WIN_TEST)/bin/layout.exe
	$(WIN_TEST)/linux/layout > $(WIN_TEST)/layout-linux.txt
	$(WINE_RUN) $(WIN_TEST)/bin/layout.exe > $(WIN_TEST)/layout-windows.txt
	@diff -u $(WIN_TEST)/layout-linux.txt $(WIN_TEST)/layout-windows.txt || { echo "struct layouts differ between Linux (-) and Windows (+)"; exit 1; }
	@echo "layout: $$(wc -l < $(WIN_TEST)/layout-linux.txt) sizes and offsets the same on Linux and Windows"
	@# Rust tests under Wine, run from the repository root (Z: in Wine). A Windows build
	@# never looks in the Linux setup folder (.deps/venv), so ORT_DYLIB_PATH names the
	@# wheel's DLL.
	CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$(WINE_RUN) ORT_DYLIB_PATH='Z:$(CURDIR)/$(ORT_WIN)/onnxruntime.dll' \
	  $(CARGO) test --target $(WIN_TARGET) -p varad --features internals --lib $(addprefix --test ,$(WIN_RUST_TESTS)) -- --skip cuda::emulator
	@echo "test-windows: all checks passed"

## test-header: the header compiles alone as C99 and as C++17 with strict warnings, and
## uses no type whose size differs between Linux and Windows (`long`, `wchar_t`, `long
## double`: tests/windows/layout.py refuses them)
test-header: $(PY)
	$(PY) tests/windows/layout.py include/varad.h target/layout.c
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

## test-c-asan: the C API tests (tests/c/*.c) under AddressSanitizer and UBSan, as
## examples-asan does for the examples (the C side is instrumented; libvarad is the normal
## debug build). Only ONNX Runtime's own leaks are suppressed (examples-c/lsan.supp).
test-c-asan:
	$(CARGO) build
	@mkdir -p target/c-asan target/c
	@set -e; for src in $(C_TESTS); do \
	  exe=target/c-asan/$$(basename $$src .c); \
	  echo "CC (asan) $$src"; \
	  $(CC) -std=c99 $(CWARN) $(ASAN_FLAGS) -Iinclude $$src -Ltarget/debug -lvarad -Wl,-rpath,$(CURDIR)/target/debug -o $$exe; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/examples-c/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $$exe; \
	done

## test-old-client: a program compiled against an older header, whose size-tagged structs
## are a prefix of today's (tests/old_client/make_old_header.py writes it), creates,
## trains, scores, saves and loads through the current library under AddressSanitizer and
## UBSan, its structs against inaccessible pages (tests/old_client/old_client.c).
test-old-client: $(PY)
	$(CARGO) build
	@mkdir -p target/old-client/include
	$(PY) tests/old_client/make_old_header.py include/varad.h target/old-client/include/varad.h
	$(CC) -std=c99 $(CWARN) $(ASAN_FLAGS) -Itarget/old-client/include -Itests/c tests/old_client/old_client.c \
	  -Ltarget/debug -lvarad -lm -Wl,-rpath,$(CURDIR)/target/debug -o target/old-client/old_client
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/examples-c/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 target/old-client/old_client

## valgrind: memcheck once over tests/c/api.c (create, train, score, save, load, destroy).
## Not part of `make test` (about 5 minutes: training runs under valgrind). Any memory
## error or "definitely lost" byte fails it. tests/valgrind.supp suppresses only what is
## not ours: the dynamic loader's strncmp over-reads, ONNX Runtime's static-initialiser
## leak (5,059 bytes) and a 4-byte self-memcpy in its environment set-up. "Possibly lost"
## (the global worker threads' TLS) and "still reachable" (ONNX Runtime's singletons) are
## process-lifetime allocations, reported but not errors. Log: target/valgrind/memcheck.log.
valgrind:
	$(CARGO) build
	@mkdir -p target/valgrind target/c
	$(CC) -std=c99 $(CWARN) -g -Iinclude tests/c/api.c -Ltarget/debug -lvarad -Wl,-rpath,$(CURDIR)/target/debug -o target/valgrind/api
	valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
	  --suppressions=tests/valgrind.supp \
	  --error-exitcode=99 --log-file=target/valgrind/memcheck.log target/valgrind/api
	@grep -E "definitely lost|indirectly lost|possibly lost|still reachable|ERROR SUMMARY" target/valgrind/memcheck.log

## fuzz: each fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS (default 60) with
## cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags
## (-Zsanitizer=address, -Cpasses=sancov-module); RUSTC_BOOTSTRAP=1 lets the stable
## toolchain accept them, so no nightly toolchain is needed. Crashes land in
## fuzz/artifacts/<target>/: copy each into fuzz/regressions/<target>/ once fixed, where
## tests/fuzz_corpus.rs replays it in every `cargo test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := model_file contract image capi
FUZZ_ENV     := RUSTC_BOOTSTRAP=1
fuzz-build:
	$(FUZZ_ENV) $(CARGO) fuzz build
# The capi target loads ONNX Runtime, whose static initialisers leak 5,059 bytes (85
# allocations) for good: LeakSanitizer's check at exit would call that a finding. Its
# suppression (examples-c/lsan.supp) only matches with full stacks, hence
# fast_unwind_on_malloc=0 for that target; libFuzzer's per-input leak check stays on.
CAPI_FUZZ_ENV := ASAN_OPTIONS=fast_unwind_on_malloc=0 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/examples-c/lsan.supp:print_suppressions=0
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
	  if [ $$t = capi ]; then env="$(CAPI_FUZZ_ENV)"; else env=; fi; \
	  env $$env $(FUZZ_ENV) $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1; \
	done

## fuzz-smoke: for CI. Building the fuzz targets (every dependency again, instrumented)
## takes far more than two minutes on two cores, so the smoke run replays every target's
## body over its seed corpus, its regressions and deterministic random inputs as a plain
## test (tests/fuzz_corpus.rs; a few seconds once built).
fuzz-smoke:
	$(CARGO) test --features internals --test fuzz_corpus

## install: header, shared and static library, pkg-config file and CMake package
PREFIX  ?= /usr/local
PROFILE ?= release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
V_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
V_MINOR := $(word 2,$(subst ., ,$(VERSION)))
SUBST   := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(V_MAJOR)|g' -e 's|@MINOR@|$(V_MINOR)|g'
install:
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release,)
	$(MAKE) --no-print-directory install-files

## install-files: install's copying alone, of what is already built (make package uses it)
install-files:
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

## package: dist/ with the NuGet package, the Python wheels (Linux, Windows) and the Linux
## and Windows release archives (packaging/package.sh), from the release builds of
## `symbols` and `windows`, which `make test` needs anyway
package: symbols windows tools
	bash packaging/package.sh

## test-package: each package used as its users would (tests/package/check.sh): the NuGet
## package's assembly and Linux library from a C# consumer under mono, its build targets
## under xbuild; the Linux wheel pip-installed into a fresh venv (onnxruntime and numpy
## from PyPI) and used from outside the checkout, its platform tag checked by auditwheel;
## the archives' contents listed and their CMake packages used by the C++ consumer of
## test-install (Linux: built and run; Windows: cross-built with MinGW)
test-package: package setup
	bash scripts/ensure-tools.sh x86_64-w64-mingw32-g++ pkg-config xbuild
	bash tests/package/check.sh

bench: setup
	$(CARGO) bench --bench tokenizer

## demo: the README's first command. Generates a small high-resolution set (1024 x 1024
## texture photographs and a procedural surface with planted defects, pixel masks), trains
## VarAD and the PatchCore-style baseline on the bundled EfficientNet-Lite0 per category,
## scores the test images, prints the metrics table and writes the report and heatmap
## montages to out/demo.
DEMO_DATA := out/demo/data
DEMO_SET  := --size 1024 --categories brick,tiles --train 8 --test-good 3 --test-per-type 1 --seed 7
demo: setup
	$(CARGO) build --release -p varad-cli
	@if [ "$$(cat $(DEMO_DATA)/.args 2>/dev/null)" != "$(DEMO_SET)" ]; then \
	  rm -rf $(DEMO_DATA) && $(PY) scripts/make_synthetic_set.py --out $(DEMO_DATA) $(DEMO_SET) && \
	  echo "$(DEMO_SET)" > $(DEMO_DATA)/.args; \
	fi
	./target/release/varad eval --data $(DEMO_DATA) --backbone $(BACKBONES)/efficientnet_lite0.onnx \
	  --out out/demo --method both --compare-map-norms none --device auto
	@echo
	@echo "report: out/demo/report.md (and report.json); heatmaps next to the ground truth: out/demo/montage_*.png"

## results: the README's result tables, rerun (about 50 minutes on 2 cores). Generates
## the four-category set twice, plain and with production variation (make_synthetic_set.py
## --vary: shifted, rotated, under drifting light; the same parts and defects), evaluates
## VarAD (three map normalisations of one trained model) and the baseline on each, and
## prints the tables from each report (out/results/readme-tables.md and
## out/results-varied/readme-tables.md; the full reports are report.md beside them).
RESULTS_SET  := --size 1024 --categories brick,grass,metal,tiles --train 12 --test-good 10 --test-per-type 2 --seed 11
# $(1): the output folder; $(2): the generator's arguments. The set is generated again only
# when the arguments changed.
define results_for
	@if [ "$$(cat $(1)/data/.args 2>/dev/null)" != "$(2)" ]; then \
	  rm -rf $(1)/data && $(PY) scripts/make_synthetic_set.py --out $(1)/data $(2) && \
	  echo "$(2)" > $(1)/data/.args; \
	fi
	./target/release/varad eval --data $(1)/data --backbone $(BACKBONES)/efficientnet_lite0.onnx \
	  --out $(1) --method both --compare-map-norms none,position --levels stride8,stride16 \
	  --input-size 1024x1024 --device cpu --threads 2 --seed 1 $(3)
	$(PY) scripts/readme_tables.py $(1)/report.json | tee $(1)/readme-tables.md
endef
results: setup
	$(CARGO) build --release -p varad-cli
	$(call results_for,out/results,$(RESULTS_SET))
	$(call results_for,out/results-varied,$(RESULTS_SET) --vary)

## results-36: the same evaluation at the size of a line's good-image folder: 40 good
## training images a category (36 train, 4 held back for calibration: the default
## calibration_fraction 0.1), the same test images' recipe and seed, plain and varied,
## into out/results-36 and out/results-36-varied. The baseline dominates its cost: its
## memory banks (10% of every training token) took 474 s per category on 2 cores, and
## cross-fitting them for its calibration about 3.2 times that again, so the whole target
## takes about 5 hours; RESULTS36_BASELINE_FOLDS=0 calibrates the baseline on its held-out
## images alone (its detection metrics unchanged): 43 minutes for the plain set.
RESULTS36_SET := --size 1024 --categories brick,grass,metal,tiles --train 40 --test-good 10 --test-per-type 2 --seed 11
RESULTS36_BASELINE_FOLDS ?=
results-36: setup
	$(CARGO) build --release -p varad-cli
	$(call results_for,out/results-36,$(RESULTS36_SET),$(if $(RESULTS36_BASELINE_FOLDS),--patchcore-cross-fit-folds $(RESULTS36_BASELINE_FOLDS),))
	$(call results_for,out/results-36-varied,$(RESULTS36_SET) --vary,$(if $(RESULTS36_BASELINE_FOLDS),--patchcore-cross-fit-folds $(RESULTS36_BASELINE_FOLDS),))

synthetic: $(PY)
	$(PY) scripts/make_synthetic_set.py --out out/synthetic $(SYNTHETIC_ARGS)

clean:
	$(CARGO) clean
	rm -rf .deps
