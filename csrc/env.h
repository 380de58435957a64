/* Switches in the environment: a feature stays on unless NAME=0. */
#ifndef SPEAD2_ENV_H
#define SPEAD2_ENV_H

#include <stdlib.h>

static inline int spead_env_allows(const char *name)
{
    const char *env = getenv(name);
    return !(env && env[0] == '0');
}

#endif
