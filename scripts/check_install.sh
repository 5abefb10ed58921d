#!/usr/bin/env bash
# Installs vtower into a temporary prefix (`make install PREFIX=...`) and builds and runs
# every language's examples and tests against that installed copy, never the build tree:
#
#   - the installed layout: versioned libvtower.so with its SONAME and symlinks,
#     libvtower.a, vtower.h, vtower.hpp, vtower.pc, vtowerConfig*.cmake;
#   - C through pkg-config, shared and static (examples/c/embed.c);
#   - C and C++ through CMake's find_package(vtower) (examples/cmake: the C example
#     shared and static, examples/cpp/embed.cpp, tests/cpp/bindings.cpp), run by ctest;
#   - Go: go vet, go test -race of go/vtower (cgo, pkg-config), examples/go;
#   - Zig: `zig build test` in examples/zig (translate-c of vtower.h, pkg-config).
#
# Needs the release build (`make lib`), a C/C++ compiler, pkg-config, cmake, go, and zig
# 0.17: $ZIG (a command), else `zig` on PATH, else the venv target/tools/zig-venv
# (`python3 -m venv target/tools/zig-venv && target/tools/zig-venv/bin/pip install
# ziglang==0.17.0`). A missing tool is an error, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
model=$repo/tests/fixtures/siglip_f32
images=$repo/tests/fixtures/images

work=$(mktemp -d "${TMPDIR:-/tmp}/vtower-check-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
passed=0

step_start=$SECONDS
step() {
    [ "$passed" -eq 0 ] || echo "   (previous step: $((SECONDS - step_start))s)"
    step_start=$SECONDS
    echo; echo "== check-install: $*"
}
ok() { passed=$((passed + 1)); echo "ok: $*"; }
die() { echo "check-install: FAILED: $*" >&2; echo "check-install: $passed passed, 1 failed"; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is required ($2)"; }

need cc "apt-get install gcc"
need c++ "apt-get install g++"
need pkg-config "apt-get install pkg-config"
need cmake "apt-get install cmake"
need go "apt-get install golang-go"
if [ -n "${ZIG:-}" ]; then
    read -r -a zig <<<"$ZIG"
elif command -v zig >/dev/null; then
    zig=(zig)
elif [ -x target/tools/zig-venv/bin/python ]; then
    zig=(target/tools/zig-venv/bin/python -m ziglang)
else
    die "zig 0.17 is required: python3 -m venv target/tools/zig-venv && target/tools/zig-venv/bin/pip install ziglang==0.17.0"
fi
zig[0]=$(command -v "${zig[0]}" || echo "${zig[0]}")
case ${zig[0]} in /*) ;; *) zig[0]=$repo/${zig[0]} ;; esac

step "make install PREFIX=$prefix"
make -s install PREFIX="$prefix"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
major=${version%%.*}
lib=$prefix/lib
for f in "$lib/libvtower.so.$version" "$lib/libvtower.a" "$prefix/include/vtower.h" \
         "$prefix/include/vtower.hpp" "$lib/pkgconfig/vtower.pc" \
         "$lib/cmake/vtower/vtowerConfig.cmake" "$lib/cmake/vtower/vtowerConfigVersion.cmake"; do
    [ -f "$f" ] || die "$f was not installed"
done
[ "$(readlink "$lib/libvtower.so.$major")" = "libvtower.so.$version" ] || die "libvtower.so.$major link"
[ "$(readlink "$lib/libvtower.so")" = "libvtower.so.$major" ] || die "libvtower.so link"
soname=$(readelf -d "$lib/libvtower.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libvtower.so.$major" ] || die "SONAME is '$soname', want libvtower.so.$major"
ok "installed layout, SONAME $soname"

# From here on only the installed copy is visible.
export PKG_CONFIG_PATH=$lib/pkgconfig
export LD_LIBRARY_PATH=$lib
[ "$(pkg-config --modversion vtower)" = "$version" ] || die "pkg-config --modversion"
[ "$(echo $(pkg-config --cflags vtower))" = "-I$prefix/include" ] || die "pkg-config --cflags: $(pkg-config --cflags vtower)"
ok "pkg-config vtower $version: $(pkg-config --libs vtower) (static: $(pkg-config --static --libs vtower))"

# Asserts that `$1` loads libvtower from the prefix (or, with `static`, not at all).
links() {
    local needed
    needed=$(readelf -d "$1" | grep -c 'NEEDED.*libvtower' || true)
    if [ "${2:-}" = static ]; then
        [ "$needed" = 0 ] || die "$1 links libvtower.so dynamically"
    else
        [ "$needed" = 1 ] || die "$1 does not link libvtower.so"
        local deps
        deps=$(ldd "$1")
        grep -qF "libvtower.so.$major => $lib/libvtower.so.$major " <<<"$deps" ||
            die "$1 does not load $lib/libvtower.so.$major: $deps"
    fi
}

# Runs an example on two fixture images and checks both results were printed.
check_embed() {
    local out
    out=$("$@" "$model" "$images/rgb.png" "$images/jpeg420.jpg") || die "$* failed: $out"
    echo "$out"
    grep -q "rgb.png: 36 tokens x 64" <<<"$out" && grep -q "jpeg420.jpg: 36 tokens x 64" <<<"$out" ||
        die "$* printed no embeddings"
}

step "C through pkg-config (shared)"
# shellcheck disable=SC2046
cc -std=c99 -O2 -Wall -Wextra -Werror examples/c/embed.c $(pkg-config --cflags --libs vtower) \
    -o "$work/embed_c"
links "$work/embed_c"
check_embed "$work/embed_c"
ok "C example, shared"

step "C through pkg-config (static: libvtower.a + Libs.private)"
private=$(pkg-config --static --libs-only-l vtower | tr ' ' '\n' | grep -vx -- '-lvtower' | tr '\n' ' ')
# shellcheck disable=SC2046,SC2086
cc -std=c99 -O2 -Wall -Wextra -Werror examples/c/embed.c $(pkg-config --cflags vtower) \
    "-L$(pkg-config --variable=libdir vtower)" -l:libvtower.a $private -o "$work/embed_c_static"
links "$work/embed_c_static" static
LD_LIBRARY_PATH='' check_embed "$work/embed_c_static"
ok "C example, static"

step "C and C++ through CMake find_package(vtower)"
# CMake's build RPATH points the programs at the imported library: no LD_LIBRARY_PATH.
saved_ld_library_path=$LD_LIBRARY_PATH
unset LD_LIBRARY_PATH
cmake -S examples/cmake -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    >"$work/cmake.log" || { cat "$work/cmake.log"; die "cmake configure"; }
grep -q "vtower_DIR:PATH=$lib/cmake/vtower" "$work/cmake/CMakeCache.txt" || die "CMake found another vtower"
cmake --build "$work/cmake" -j 2 -- --no-print-directory
links "$work/cmake/embed_c"
links "$work/cmake/embed_cpp"
links "$work/cmake/cpp_bindings"
links "$work/cmake/embed_c_static" static
(cd "$work/cmake" && ctest --output-on-failure) || die "ctest"
"$work/cmake/cpp_bindings" "$model" "$images"
ok "CMake: C (shared, static), C++ example, C++ bindings test"
export LD_LIBRARY_PATH=$saved_ld_library_path

step "Go (go/vtower, examples/go)"
export GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1
# A build cache of its own: Go 1.19 keeps cgo packages cached across pkg-config changes, so a
# shared cache would link against the prefix of an earlier run (long deleted).
export GOCACHE=$work/go-cache
(cd go/vtower && test -z "$(gofmt -l .)") || die "gofmt: $(cd go/vtower && gofmt -l .)"
(cd go/vtower && go vet ./...) || die "go vet (go/vtower)"
(cd go/vtower && go test -count=1 -race -v ./... 2>&1 | tee "$work/go-test.log") || die "go test"
(cd examples/go && test -z "$(gofmt -l .)" && go vet ./... && go build -o "$work/embed_go" .) ||
    die "examples/go"
links "$work/embed_go"
check_embed "$work/embed_go"
ok "Go: vet, test -race, example"

step "Zig (examples/zig: zig build test) with $("${zig[@]}" version)"
export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$repo/target/zig-cache}"
(cd examples/zig && "${zig[@]}" build test --summary all --cache-dir "$work/zig-cache" \
    --prefix "$work/zig-out" -Dmodel="$model" -Dimages="$images") || die "zig build test"
(cd examples/zig && "${zig[@]}" build --cache-dir "$work/zig-cache" --prefix "$work/zig-out") ||
    die "zig build"
links "$work/zig-out/bin/embed"
check_embed "$work/zig-out/bin/embed"
ok "Zig: unit tests, example"

echo "   (previous step: $((SECONDS - step_start))s)"
echo
echo "check-install: $passed passed, 0 failed in ${SECONDS}s"
