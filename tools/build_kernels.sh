#!/bin/sh
# Rebuild the committed AMDGPU code objects in kfdtrace/data/kernels/.
#
#   tools/build_kernels.sh [OUTDIR]        (default: kfdtrace/data/kernels)
#
# Layout: one code object per (target, optimisation level) holding every kernel of kernels.cl:
#   kernels-<target>-<opt>.hsaco   target in $TARGETS, opt in $OPTS
# Each is a loadable ET_DYN AMDGPU code object (code object v6, clang-22's default), built
# without device libraries (-nogpulib), with kernel argument names in the metadata
# (-cl-kernel-arg-info).
#
# Deterministic: the compiler runs in the source directory on relative names, the object goes
# through a fixed file name, no debug info is emitted, and neither clang nor lld records paths or
# timestamps. The only toolchain fingerprint is the .comment section ("Debian clang version ...",
# "Linker: ..."), which tests use to decide whether a byte-for-byte comparison is meaningful.
#
# clang warns "local memory global used by non-kernel function" for reduce_sum: its LDS array is
# used by the __clang_ocl_kern_imp_reduce_sum body function, which LLVM's LDS lowering still places
# in the kernel's group segment (group_segment_fixed_size 1024). Expected.
#
# Environment: CLANG (default clang-22), LLD (default ld.lld-22), TARGETS, OPTS.
set -eu

CLANG=${CLANG:-clang-22}
LLD=${LLD:-ld.lld-22}
TARGETS=${TARGETS:-"gfx942 gfx1100 gfx1201"}
OPTS=${OPTS:-"O0 O2"}

here=$(cd "$(dirname "$0")" && pwd)
src="$here/../kfdtrace/data/kernels"
out=${1:-$src}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

cd "$src"
for target in $TARGETS; do
    for opt in $OPTS; do
        "$CLANG" -x cl -Xclang -finclude-default-header -target amdgcn-amd-amdhsa \
            -mcpu="$target" -nogpulib -"$opt" -cl-kernel-arg-info \
            -c kernels.cl -o "$work/kernels.o"
        "$LLD" -shared --no-undefined "$work/kernels.o" -o "$work/kernels.hsaco"
        mv "$work/kernels.hsaco" "$out/kernels-$target-$opt.hsaco"
        echo "built $out/kernels-$target-$opt.hsaco"
    done
done
