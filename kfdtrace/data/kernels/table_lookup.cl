/* out[i] = luts[v & 1][(v >> 1) & 3] with v = in[i], for i < n. 1D grid.
 *
 * `luts` is a program-scope table of pointers to two constant tables. The linker cannot resolve
 * those pointers (the load address is unknown), so the code object carries two dynamic
 * R_AMDGPU_RELATIVE64 relocations in .data.rel.ro that the loader must apply: this kernel is the
 * fixture for relocation handling (CodeObject.image(base)). Expected values:
 *     v & 1 == 0: 10, 20, 30, 40     v & 1 == 1: 1, 3, 5, 7   (indexed by (v >> 1) & 3) */
#include "common.h"

constant uint lut_even[4] = {10u, 20u, 30u, 40u};
constant uint lut_odd[4] = {1u, 3u, 5u, 7u};
constant uint *constant luts[2] = {lut_even, lut_odd};

kernel void table_lookup(global const uint *in, global uint *out, uint n)
{
    uint i = GLOBAL_ID_X();
    if (i < n) {
        uint v = in[i];
        out[i] = luts[v & 1u][(v >> 1) & 3u];
    }
}
