/* Data-dependent control flow: lanes of one wave take different branches and loop a different
 * number of times (exercises EXEC masking). For i < n, with v = in[i]:
 *
 *     r = v < 0 ? -v : (v & 1) ? 3 * v + 1 : v / 2      (int; -v and 3v+1 wrap in two's complement)
 *     acc = (uint)r
 *     repeat (v & 15) times, t = 0, 1, ...:
 *         acc = acc * 5 + t                                (uint, mod 2^32)
 *         if (acc & 0x100) acc ^= 0x55
 *     out[i] = (int)acc
 */
#include "common.h"

kernel void divergent(global const int *in, global int *out, uint n)
{
    uint i = GLOBAL_ID_X();
    if (i < n) {
        int v = in[i];
        uint r;
        if (v < 0)
            r = 0u - (uint)v;
        else if (v & 1)
            r = 3u * (uint)v + 1u;
        else
            r = (uint)(v / 2);
        uint acc = r;
        uint trips = (uint)v & 15u;
        for (uint t = 0; t < trips; ++t) {
            acc = acc * 5u + t;
            if (acc & 0x100u)
                acc ^= 0x55u;
        }
        out[i] = (int)acc;
    }
}
