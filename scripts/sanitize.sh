#!/usr/bin/env bash
# The C tests and C examples under sanitizers (`make sanitize`, part of `make check`):
#
#   valgrind  memcheck on every C test and C example program, run exactly as `cargo test`
#             runs them (tests/c_api.rs, tests/examples.rs, tests/qwen.rs build their inputs
#             and arguments; VTOWER_TEST_RUNNER puts valgrind in front of each program), plus
#             tests/c/pool_release.c. Fails on any memcheck error or definite leak.
#             "Possibly lost" blocks are not errors: rayon's detached pool threads (their TLS
#             is freed as they exit, after main may have returned) and crossbeam-epoch's
#             tagged-pointer lists of per-thread records are reported as such. No
#             suppressions are needed.
#   asan      the library built with nightly `-Zsanitizer=address` (dev profile, into
#             target/asan so the stable build is never touched), the same C programs
#             compiled with `-fsanitize=address,undefined` against it (VTOWER_TEST_CFLAGS,
#             VTOWER_TEST_LIB_DIR), plus the hostile-input C test and the C++ tests, and
#             LeakSanitizer on. Any report fails the run.
#   unsafe    every `unsafe` outside src/ffi/ must be exercised by its module's unit tests
#             under ASan: for each such file the stage runs those tests in the ASan build
#             and fails when there are none (today there is no unsafe outside src/ffi/).
#
# usage: scripts/sanitize.sh [valgrind|asan|unsafe]...   (no argument: all three)
# Needs valgrind and a nightly toolchain (`rustup toolchain install nightly --profile
# minimal`); .ci/run installs both. tests/hostile.rs's C program and the C++ tests run in
# the asan stage only: the former decodes an 80-megapixel strip (5 minutes under valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CARGO=${CARGO:-cargo}
NIGHTLY=${NIGHTLY:-+nightly}
CC=${CC:-cc}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valgrind asan unsafe)

work=$(mktemp -d "${TMPDIR:-/tmp}/vtower-sanitize.XXXXXX")
current=setup
died=
on_exit() {
    local rc=$?
    rm -rf "$work"
    if [ $rc -ne 0 ] && [ -z "$died" ]; then
        echo "sanitize: FAILED in the $current stage (exit $rc): see the report above" >&2
    fi
}
trap on_exit EXIT

summary=()
step() { echo; echo "== sanitize: $*"; }
die() { died=1; echo "sanitize: FAILED ($current): $*" >&2; exit 1; }
# timed NAME CMD...: runs CMD, records how long it took.
timed() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    summary+=("$(printf '%-44s %4ds' "$name" $((SECONDS - start)))")
}

# The integration tests that compile and run C programs: "binary[:filter]".
C_TESTS=(c_api examples qwen:mrope_positions_from_c)
# Also run in the asan stage (too slow under valgrind, or not C).
ASAN_ONLY_TESTS=(hostile:hostile_images_through_the_c_api_under_a_memory_cap cpp_api)

# cargo_tests ENTRY...: runs each integration test binary (with its filter) on the stable
# build, with whatever VTOWER_TEST_* variables the caller exported.
cargo_tests() {
    local entry bin filter
    for entry in "$@"; do
        bin=${entry%%:*}
        filter=
        [ "$bin" = "$entry" ] || filter=${entry#*:}
        echo "-- cargo test --test $bin ${filter:+-- $filter}"
        $CARGO test -q --test "$bin" -- ${filter:+"$filter"}
    done
}

# A folder with libvtower.so and its SONAME link pointing at $1/libvtower.so.
lib_links() {
    local so=$1/libvtower.so dir=$2
    [ -f "$so" ] || die "no $so"
    mkdir -p "$dir"
    ln -sf "$so" "$dir/libvtower.so"
    ln -sf "$so" "$dir/libvtower.so.0"
}

# compile_c SRC OUT LIBDIR EXTRA-FLAGS...: a C test program, as tests/common/mod.rs builds them.
compile_c() {
    local src=$1 out=$2 lib=$3
    shift 3
    $CC -std=c99 -Wall -Wextra -Wpedantic -Werror -O1 -g -Iinclude -Itests/c "$src" -o "$out" \
        -L"$lib" -Wl,-rpath,"$lib" -lvtower -lpthread -lm "$@"
}

pool_release() {
    local lib=$1 runner=$2
    shift 2
    compile_c tests/c/pool_release.c "$work/pool_release" "$lib" "$@"
    echo "-- tests/c/pool_release.c"
    $runner "$work/pool_release" tests/fixtures/siglip_f32 tests/fixtures/images/photo.jpg 3
}

# A program with a bug that each tool must report, or a stage would pass without checking
# anything: no argument, a heap overflow; one, a definite leak; two, a
# signed integer overflow (UBSan).
canary() {
    cat >"$work/canary.c" <<'EOF'
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    (void)argv;
    if (argc == 1) {
        char *p = malloc(16);
        p[argc + 15] = 1;
        free(p);
    }
    if (argc == 2) printf("%p\n", (void *)malloc(32));
    if (argc == 3) {
        int x = INT_MAX - 2;
        x += argc;
        printf("%d\n", x);
    }
    return 0;
}
EOF
    $CC -g -O0 "$work/canary.c" -o "$work/canary" "$@"
}

# must_fail WHAT CMD...: CMD must exit non-zero.
must_fail() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then die "$what went unreported"; fi
}

# ---------------------------------------------------------------------------------------
VALGRIND=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
          --show-leak-kinds=definite --num-callers=40)

stage_valgrind() {
    command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
    step "valgrind: memcheck is live (an overflow and a leak must fail)"
    canary
    must_fail "valgrind: a heap overflow" "${VALGRIND[@]}" "$work/canary"
    must_fail "valgrind: a definite leak" "${VALGRIND[@]}" "$work/canary" leak
    echo "ok"
    step "valgrind: building the C tests' harness (stable, dev profile)"
    timed "valgrind: build test harness" \
        $CARGO test -q --no-run $(printf -- '--test %s ' "${C_TESTS[@]%%:*}")
    step "valgrind: C tests and C examples"
    export VTOWER_TEST_RUNNER="${VALGRIND[*]}"
    timed "valgrind: C tests and examples" cargo_tests "${C_TESTS[@]}"
    unset VTOWER_TEST_RUNNER
    lib_links "$repo/target/debug/deps" "$work/lib"
    timed "valgrind: pool_release" pool_release "$work/lib" "${VALGRIND[*]}"
}

# ---------------------------------------------------------------------------------------
# Nightly, the library instrumented (not build scripts or proc-macros: hence --target).
host() { rustc $NIGHTLY -vV | sed -n 's/^host: //p'; }
ASAN_TARGET_DIR=target/asan
SAN_CFLAGS=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The dev profile with changes that cut the clean build's time (it is the longest step of
# CI): dependencies at opt-level 0 (not 3; an instrumented candle-core alone took minutes
# at level 1), except the few whose speed the tests feel (PNG inflate for the 80-megapixel
# hostile image, the f32/f16 matmul kernels) at level 1; and line-tables-only debuginfo
# (file:line in reports, less to link). The crates Cargo.toml builds at level 0 stay so.
# Usage: asan_cargo SUBCOMMAND [ARGS...] [-- TEST-ARGS...]: the cargo options go right after
# the subcommand, so that nothing of theirs lands after a `--` (where the test binary, not
# cargo, would get them).
asan_cargo() {
    local sub=$1
    shift
    local hot=(png fdeflate miniz_oxide crc32fast gemm-common gemm-f32 gemm-f16 pulp)
    RUSTFLAGS="-Zsanitizer=address" CARGO_PROFILE_DEV_DEBUG=line-tables-only \
        $CARGO $NIGHTLY "$sub" --config 'profile.dev.package."*".opt-level=0' \
        $(printf -- "--config profile.dev.package.%s.opt-level=1 " "${hot[@]}") \
        --target "$(host)" --target-dir "$ASAN_TARGET_DIR" "$@"
}

asan_build() {
    $CARGO $NIGHTLY --version >/dev/null 2>&1 ||
        die "no nightly toolchain (rustup toolchain install nightly --profile minimal)"
    step "asan: building libvtower with -Zsanitizer=address ($($CARGO $NIGHTLY --version))"
    timed "asan: build libvtower (nightly)" asan_cargo build -q --lib
    asan_lib=$repo/$ASAN_TARGET_DIR/$(host)/debug
    nm -D "$asan_lib/libvtower.so" | grep -c __asan_report_load >/dev/null ||
        die "$asan_lib/libvtower.so is not instrumented"
}

# An overflow inside a Rust cdylib built as libvtower is, called from a sanitized C program:
# rustc's instrumentation must report through the C compiler's ASan runtime.
rust_canary() {
    cat >"$work/rcanary.rs" <<'EOF'
#[no_mangle]
pub extern "C" fn rust_canary(i: usize) -> u8 {
    let v = vec![7u8; 16];
    unsafe { std::ptr::read_volatile(v.as_ptr().add(i)) }
}
EOF
    printf '%s\n' '#include <stdio.h>' 'unsigned char rust_canary(size_t i);' \
        'int main(int argc, char **argv) { (void)argv; return rust_canary((size_t)argc + 15); }' \
        >"$work/rmain.c"
    rustc $NIGHTLY -Zsanitizer=address --crate-type cdylib -C debuginfo=line-tables-only \
        --target "$(host)" "$work/rcanary.rs" -o "$work/librcanary.so"
    $CC -g "${SAN_CFLAGS[@]}" "$work/rmain.c" -o "$work/rmain" -L"$work" -lrcanary \
        -Wl,-rpath,"$work"
    if "$work/rmain" 2>"$work/rmain.err"; then die "ASan missed an overflow in Rust code"; fi
    grep -c 'heap-buffer-overflow' "$work/rmain.err" >/dev/null ||
        { cat "$work/rmain.err"; die "ASan did not report the overflow in Rust code"; }
}

stage_asan() {
    asan_build
    step "asan: ASan, LSan, UBSan are live (C: overflow, leak, UB; Rust: overflow must fail)"
    canary "${SAN_CFLAGS[@]}"
    must_fail "ASan: a heap overflow" "$work/canary"
    must_fail "LSan: a definite leak" "$work/canary" leak
    must_fail "UBSan: a signed overflow" "$work/canary" signed overflow
    rust_canary
    echo "ok"
    step "asan: building the C tests' harness (stable, dev profile)"
    timed "asan: build test harness" $CARGO test -q --no-run \
        $(printf -- '--test %s ' "${C_TESTS[@]%%:*}" "${ASAN_ONLY_TESTS[@]%%:*}")
    step "asan: C tests and C examples (C: -fsanitize=address,undefined), C++ tests"
    export VTOWER_TEST_LIB_DIR=$asan_lib VTOWER_TEST_CFLAGS="${SAN_CFLAGS[*]}"
    timed "asan: C/C++ tests and examples" cargo_tests "${C_TESTS[@]}" "${ASAN_ONLY_TESTS[@]}"
    unset VTOWER_TEST_LIB_DIR VTOWER_TEST_CFLAGS
    lib_links "$asan_lib" "$work/asan-lib"
    timed "asan: pool_release" pool_release "$work/asan-lib" "" "${SAN_CFLAGS[@]}"
}

# ---------------------------------------------------------------------------------------
stage_unsafe() {
    step "unsafe: every unsafe outside src/ffi/ runs under ASan in its unit tests"
    local files file mod out n
    # unsafe blocks, fns, impls, traits, extern blocks; not in // comments.
    files=
    for file in $(find src -name '*.rs' -not -path 'src/ffi/*' | sort); do
        if sed 's://.*$::' "$file" |
            grep -cE '(^|[^_[:alnum:]])unsafe[[:space:]]*(\{|fn[[:space:]]|impl|trait|extern)' \
                >/dev/null; then
            files="$files $file"
        fi
    done
    if [ -z "$files" ]; then
        echo "no unsafe outside src/ffi/"
        return
    fi
    [ -n "${asan_lib:-}" ] || asan_build
    for file in $files; do
        # src/a/b.rs and src/a/b/mod.rs are module a::b; tests are named a::b::tests::...
        mod=${file#src/}
        mod=${mod%.rs}
        mod=${mod%/mod}
        mod=${mod//\//::}
        [ "$mod" != lib ] || mod=tests # the crate root's own unit tests
        # A module whose unsafe code sits behind its parent's safe interface (src/kernels/
        # x86.rs behind src/kernels/mod.rs) is tested through that interface: its parent's
        # tests then count.
        for m in "$mod" "${mod%::*}"; do
            echo "-- $file: unit tests under $m:: (ASan)"
            out=$(asan_cargo test -q --lib -- "$m::" 2>&1) || { echo "$out"; die "$file"; }
            echo "$out" | grep -E '^test result' || true
            n=$(echo "$out" | sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' | awk 'NR == 1')
            [ "${n:-0}" -eq 0 ] || break
            [ "$m" != "${mod%::*}" ] || break
        done
        [ "${n:-0}" -gt 0 ] || die "$file has unsafe code but no unit tests under $mod:: or its parent"
    done
}

total=$SECONDS
for s in "${stages[@]}"; do
    current=$s
    case $s in
        valgrind) stage_valgrind ;;
        asan) stage_asan ;;
        unsafe) timed "unsafe: unit tests under ASan" stage_unsafe ;;
        *) die "unknown stage $s (valgrind, asan, unsafe)" ;;
    esac
done
echo
echo "== sanitize: passed (${stages[*]}) in $((SECONDS - total))s"
printf '   %s\n' "${summary[@]}"
