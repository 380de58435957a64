/* Adding to and taking from an eventfd, where a failure can only mean the
 * counter is already saturated or already empty, which is what was wanted. */
#ifndef SPEAD2_EFD_H
#define SPEAD2_EFD_H

#include <stdint.h>
#include <unistd.h>

static inline void spead_efd_add(int fd, uint64_t n)
{
    ssize_t r = write(fd, &n, sizeof(n));
    (void) r;
}

static inline void spead_efd_take(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void) r;
}

#endif
