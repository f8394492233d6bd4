/* out[workgroup_id_x] = sum of in[i] over the work-items i < n of that workgroup. 1D grid.
 *
 * Tree reduction in LDS (a 256-float local array, so group_segment_fixed_size >= 1024) with a
 * workgroup barrier between steps. Any workgroup size up to 256 works (not only powers of two):
 * step s folds tmp[lid + s] into tmp[lid] for lid < s while lid + s is inside the workgroup.
 * Lanes with i >= n contribute 0. The summation order is the tree order, not left to right. */
#include "common.h"

kernel void reduce_sum(global const float *in, global float *out, uint n)
{
    local float tmp[256];
    uint lid = __builtin_amdgcn_workitem_id_x();
    uint size = __builtin_amdgcn_workgroup_size_x();
    uint i = GLOBAL_ID_X();

    tmp[lid] = (i < n) ? in[i] : 0.0f;
    WORKGROUP_BARRIER();
    for (uint s = 128; s > 0; s >>= 1) {
        if (lid < s && lid + s < size)
            tmp[lid] += tmp[lid + s];
        WORKGROUP_BARRIER();
    }
    if (lid == 0)
        out[__builtin_amdgcn_workgroup_id_x()] = tmp[0];
}
