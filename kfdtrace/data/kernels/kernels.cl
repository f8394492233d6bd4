/* The translation unit that tools/build_kernels.sh compiles: every kernel in one code object per
 * (target, optimisation level). One translation unit, so the code object has exactly one
 * NT_AMDGPU_METADATA note (linking several objects would concatenate several notes). */
#include "vector_add.cl"
#include "saxpy.cl"
#include "fill.cl"
#include "reduce_sum.cl"
#include "matmul.cl"
#include "histogram.cl"
#include "divergent.cl"
#include "table_lookup.cl"
