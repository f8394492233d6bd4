/* Stub for tests/test_abi.py: Debian's linux-libc-dev ships linux/kfd_ioctl.h, which includes
 * <drm/drm.h>, but no package provides that file there. kfd_ioctl.h needs only the __u32/__u64
 * types and the _IOC macros from it. */
#ifndef KFDTRACE_STUB_DRM_H
#define KFDTRACE_STUB_DRM_H
#include <linux/types.h>
#include <linux/ioctl.h>
#endif
