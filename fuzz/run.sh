#!/bin/sh
# Runs one fuzz target with the settings RELIABILITY.md reports:
#   fuzz/run.sh <image|model_folder|capi> <seconds> [more libFuzzer flags]
# New inputs go to fuzz/corpus-work/<target> (not committed); the committed corpus
# fuzz/corpus/<target> is read. Crashes, timeouts and OOMs go to fuzz/artifacts/<target>/.
set -e
target=$1; secs=$2; shift 2
cd "$(dirname "$0")"
case $target in
  image) max=65536 ;;
  model_folder) max=32768 ;;
  capi) max=16384 ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p corpus-work/$target artifacts/$target
exec cargo +nightly fuzz run "$target" "corpus-work/$target" "corpus/$target" -- \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -max_len=$max \
  -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="artifacts/$target/" "$@"
