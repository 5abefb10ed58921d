# vtower: convenience targets. `make demo` runs the C example on a bundled model;
# `make test` runs every test (what CI runs).

CARGO ?= cargo
CC ?= cc
BUILD := target/release

.PHONY: all lib demo demo-prompt test lint header fixtures clean

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

# Every test: Rust unit and integration tests, the C tests in tests/c, the header checks
# and the C example.
test: lint
	$(CARGO) test

# Regenerate include/vtower.h from src/ffi/ with cbindgen.
header:
	$(CARGO) test --test header -- --ignored regenerate_header

# Regenerate the reference fixtures (needs Python; installs torch+transformers in a venv).
fixtures:
	scripts/gen_fixtures.sh

clean:
	$(CARGO) clean
