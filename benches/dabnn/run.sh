#!/usr/bin/env bash
# Binary 3x3 conv layers, daBNN against Kestrel: executed aarch64 instructions under qemu.
#
#   benches/dabnn/run.sh [build|count|table|all]        (default: all; see README.md)
#
# Environment:
#   DABNN_SRC        a daBNN source tree (github.com/JDAI-CV/dabnn); needed by `build`
#   OUT              results folder (default target/dabnn): bin/, raw/, results.tsv, table.md
#   PLUGIN           the arm-peers icount plugin (default $ARM_PEERS_HOME/build/icount_plugin.so,
#                    ARM_PEERS_HOME default /var/tmp/arm-peers; built by `arm-peers setup`)
#   ROOT             qemu -L sysroot (default /usr/aarch64-linux-gnu)
#   CPUS             qemu -cpu list (default "cortex-a72 cortex-a76")
#   SHAPES           SIZE:CHANNELS list (default "56:64 28:128 14:256 7:512")
#   RUNS             windowed runs per count (default 3); figures are total / RUNS
#   KESTREL_PROFILE  cargo profile of the Kestrel side (default bundle-ci: release code
#                    generation without LTO; `release` adds LTO and takes longer to build)
#   KESTREL_RUSTFLAGS  default "-C target-cpu=cortex-a72"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$REPO/target/dabnn}
ARM_PEERS_HOME=${ARM_PEERS_HOME:-/var/tmp/arm-peers}
PLUGIN=${PLUGIN:-$ARM_PEERS_HOME/build/icount_plugin.so}
ROOT=${ROOT:-/usr/aarch64-linux-gnu}
CPUS=${CPUS:-"cortex-a72 cortex-a76"}
SHAPES=${SHAPES:-"56:64 28:128 14:256 7:512"}
RUNS=${RUNS:-3}
KESTREL_PROFILE=${KESTREL_PROFILE:-bundle-ci}
KESTREL_RUSTFLAGS=${KESTREL_RUSTFLAGS:-"-C target-cpu=cortex-a72"}
DBIN=$OUT/bin/dabnn_bconv_icount
KBIN=$OUT/bin/bconv_icount
mkdir -p "$OUT/bin" "$OUT/raw"

build() {
    [ -n "${DABNN_SRC:-}" ] || { echo "set DABNN_SRC to a daBNN source tree" >&2; exit 2; }
    echo "== daBNN harness (aarch64-linux-gnu-g++ -O3, static)" >&2
    aarch64-linux-gnu-g++ -std=c++17 -O3 -DNDEBUG -mcpu=cortex-a72 -static \
        -I "$HERE/stub" -I "$DABNN_SRC" -o "$DBIN" \
        "$HERE/dabnn_bconv_icount.cpp" "$DABNN_SRC/dabnn/allocator.cpp"
    echo "== Kestrel bconv_icount ($KESTREL_PROFILE, aarch64, $KESTREL_RUSTFLAGS)" >&2
    local target=${CARGO_TARGET_DIR:-$REPO/target}
    (cd "$REPO" && RUSTFLAGS="$KESTREL_RUSTFLAGS" cargo build --profile "$KESTREL_PROFILE" \
        --example bconv_icount -p kestrel-runtime --target aarch64-unknown-linux-gnu)
    cp "$target/aarch64-unknown-linux-gnu/$KESTREL_PROFILE/examples/bconv_icount" "$KBIN"
}

# count CPU SIDE BIN SIZE CH STAGE  ->  one results.tsv line
count() {
    local cpu=$1 side=$2 bin=$3 size=$4 ch=$5 stage=$6
    local raw="$OUT/raw/$side.$cpu.$size.$ch.$stage.txt" log
    log=$(qemu-aarch64 -cpu "$cpu" -L "$ROOT" -plugin "$PLUGIN,out=$raw" \
        "$bin" "$size" "$ch" "$RUNS" "$stage" 2>&1) || {
        echo "FAILED: $side $cpu $size $ch $stage: $log" >&2; return 1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$cpu" "$size" "$ch" "$stage" "$RUNS" \
        "$(awk '$1=="T"{print $2}' "$raw")" "$(awk '$1=="O"{s+=$3} END{print s+0}' "$raw")" \
        "$(echo "$log" | tail -1)" >> "$OUT/results.tsv"
}

count_all() {
    [ -f "$PLUGIN" ] || { echo "no icount plugin at $PLUGIN (arm-peers setup builds it)" >&2; exit 2; }
    : > "$OUT/results.tsv"
    for cpu in $CPUS; do
        for shape in $SHAPES; do
            local size=${shape%:*} ch=${shape#*:} st
            local dstages="bconv pad+bconv pad pack"
            case $ch in
                64) dstages="$dstages im2col" ;;
                128) dstages="$dstages fill" ;;
                *) dstages="$dstages wpack ipack unpack" ;;
            esac
            for st in $dstages; do count "$cpu" dabnn "$DBIN" "$size" "$ch" "$st"; done
            for st in op-zero op-one kernel-float-zero kernel-float-one kernel-counts layout; do
                count "$cpu" kestrel "$KBIN" "$size" "$ch" "$st"
            done
            echo "counted $cpu $size x $size x $ch" >&2
        done
    done
}

case ${1:-all} in
    build) build ;;
    count) count_all ;;
    table) python3 "$HERE/table.py" "$OUT/results.tsv" | tee "$OUT/table.md" ;;
    all) build; count_all; python3 "$HERE/table.py" "$OUT/results.tsv" | tee "$OUT/table.md" ;;
    *) echo "usage: $0 [build|count|table|all]" >&2; exit 2 ;;
esac
