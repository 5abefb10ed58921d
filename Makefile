# vtower: convenience targets. `make demo` runs the C example on a bundled model (the main
# job); `make check` runs every test (what CI runs): `make test` (fmt, clippy, cargo test),
# `make sanitize` (the C tests and examples under valgrind and under ASan + UBSan),
# `make check-install` (installs into a temporary prefix and builds and runs the C, C++, Go
# and Zig examples and tests against that copy) and the demo. `make install PREFIX=...`
# installs the library, headers, pkg-config and CMake files.

CARGO ?= cargo
CC ?= cc
BUILD := target/release

.PHONY: all lib demo demo-prompt test check lint header fixtures clean install uninstall check-install \
	sanitize sanitize-valgrind sanitize-asan

# Install locations (GNU conventions; DESTDIR for staged installs). LIBDIR and INCLUDEDIR
# must be absolute.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR ?= $(LIBDIR)/cmake/vtower
DESTDIR ?=
INSTALL ?= install
CMAKE ?= cmake

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR := $(word 1,$(subst ., ,$(VERSION)))
# What libvtower.a needs when linked statically, as printed by
# `cargo rustc --lib --crate-type staticlib -- --print native-static-libs` (minus -lc).
LIBS_PRIVATE := -lgcc_s -lutil -lrt -lpthread -lm -ldl

all: lib

lib:
	$(CARGO) build --release
	ln -sf libvtower.so $(BUILD)/libvtower.so.0

$(BUILD)/embed: examples/c/embed.c include/vtower.h lib
	$(CC) -std=c99 -O2 -Wall -Wextra -Iinclude $< -o $@ -L$(BUILD) -lvtower -Wl,-rpath,$(abspath $(BUILD))

$(BUILD)/prompt: examples/c/prompt.c include/vtower.h lib
	$(CC) -std=c99 -O2 -Wall -Wextra -Iinclude $< -o $@ -L$(BUILD) -lvtower -Wl,-rpath,$(abspath $(BUILD))

# The main job: embed two bundled images with the bundled SigLIP fixture model.
demo: $(BUILD)/embed
	$(BUILD)/embed tests/fixtures/siglip_f32 tests/fixtures/images/jpeg420.jpg tests/fixtures/images/rgba.png

# Where an image's embeddings go in a prompt (Gemma3 with pan-and-scan, then LLaVA).
demo-prompt: $(BUILD)/prompt
	$(BUILD)/prompt tests/fixtures/gemma3_f32 tests/fixtures/images/photo.jpg 20
	$(BUILD)/prompt tests/fixtures/llava_clip_f32 tests/fixtures/images/photo.jpg

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Rust unit and integration tests, parity, the C and C++ tests, header checks, the C examples.
test: lint
	$(CARGO) test

# The C tests and C examples (as `cargo test` runs them) under valgrind memcheck, then under
# ASan + UBSan (the library built by nightly rustc with -Zsanitizer=address into target/asan),
# and the check that any unsafe outside src/ffi/ runs under ASan in its unit tests. Needs
# valgrind and a nightly toolchain: see scripts/sanitize.sh.
sanitize:
	scripts/sanitize.sh valgrind asan unsafe

sanitize-valgrind:
	scripts/sanitize.sh valgrind

sanitize-asan:
	scripts/sanitize.sh asan unsafe

# Regenerate include/vtower.h from src/ffi/ with cbindgen.
header:
	$(CARGO) test --test header -- --ignored regenerate_header

# Regenerate the reference fixtures (needs Python; installs torch+transformers in a venv).
fixtures:
	scripts/gen_fixtures.sh

clean:
	$(CARGO) clean

# libvtower.so.$(VERSION) with the SONAME libvtower.so.$(MAJOR) (set by build.rs) and the
# usual two symlinks, libvtower.a, both headers, vtower.pc and the CMake package files.
install: lib
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR)
	$(INSTALL) -m 755 $(BUILD)/libvtower.so $(DESTDIR)$(LIBDIR)/libvtower.so.$(VERSION)
	ln -sfn libvtower.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libvtower.so.$(MAJOR)
	ln -sfn libvtower.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libvtower.so
	$(INSTALL) -m 644 $(BUILD)/libvtower.a $(DESTDIR)$(LIBDIR)/libvtower.a
	$(INSTALL) -m 644 include/vtower.h include/vtower.hpp $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
	    packaging/vtower.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/vtower.pc
	sed -e "s|@LIBDIR_REL@|$$(realpath -m --relative-to=$(CMAKEDIR) $(LIBDIR))|g" \
	    -e "s|@INCLUDEDIR_REL@|$$(realpath -m --relative-to=$(CMAKEDIR) $(INCLUDEDIR))|g" \
	    -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
	    -e 's|@CMAKE_LIBS_PRIVATE@|$(subst $() ,;,$(strip $(patsubst -l%,%,$(filter-out -lpthread,$(LIBS_PRIVATE)))))|g' \
	    packaging/vtowerConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/vtowerConfig.cmake
	$(CMAKE) -DOUT=$(DESTDIR)$(CMAKEDIR)/vtowerConfigVersion.cmake -DVERSION=$(VERSION) \
	    -DCMAKE_SIZEOF_VOID_P=$$(( $$(getconf LONG_BIT) / 8 )) -P packaging/write_version.cmake

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libvtower.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libvtower.so.$(MAJOR) \
	    $(DESTDIR)$(LIBDIR)/libvtower.so $(DESTDIR)$(LIBDIR)/libvtower.a \
	    $(DESTDIR)$(INCLUDEDIR)/vtower.h $(DESTDIR)$(INCLUDEDIR)/vtower.hpp \
	    $(DESTDIR)$(PKGCONFIGDIR)/vtower.pc \
	    $(DESTDIR)$(CMAKEDIR)/vtowerConfig.cmake $(DESTDIR)$(CMAKEDIR)/vtowerConfigVersion.cmake
	-rmdir $(DESTDIR)$(CMAKEDIR)

# Installs into a temporary prefix and builds and runs every language's example and test
# against the installed copy (needs pkg-config, cmake, go, and zig from PyPI's ziglang:
# see scripts/check_install.sh).
ZIG_VENV := target/tools/zig-venv

# Zig 0.17 from PyPI's ziglang package, in a venv inside target/ (used when no `zig` is on PATH).
$(ZIG_VENV)/.ok:
	command -v zig >/dev/null || { rm -rf $(ZIG_VENV) && python3 -m venv $(ZIG_VENV) && \
		$(ZIG_VENV)/bin/pip install -q ziglang==0.17.0; }
	mkdir -p $(ZIG_VENV) && touch $@

check-install: lib $(ZIG_VENV)/.ok
	scripts/check_install.sh

# Every test: `make test`, the sanitizers, then the install check (C, C++, Go and Zig against
# an installed copy), then the demo. This is what CI runs.
check: test sanitize check-install demo
