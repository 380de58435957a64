#include "stats.h"

const char *const spead_stat_names[SPEAD_STAT_CORE_COUNT] = {
    [SPEAD_STAT_HEAPS] = "heaps",
    [SPEAD_STAT_INCOMPLETE_HEAPS_EVICTED] = "incomplete_heaps_evicted",
    [SPEAD_STAT_INCOMPLETE_HEAPS_FLUSHED] = "incomplete_heaps_flushed",
    [SPEAD_STAT_PACKETS] = "packets",
    [SPEAD_STAT_BATCHES] = "batches",
    [SPEAD_STAT_MAX_BATCH] = "max_batch",
    [SPEAD_STAT_SINGLE_PACKET_HEAPS] = "single_packet_heaps",
    [SPEAD_STAT_SEARCH_DIST] = "search_dist",
    [SPEAD_STAT_WORKER_BLOCKED] = "worker_blocked",
    [SPEAD_STAT_BAD_PACKETS] = "bad_packets",
    [SPEAD_STAT_REJECTED_PACKETS] = "rejected_packets",
    [SPEAD_STAT_DUPLICATE_PACKETS] = "duplicate_packets",
    [SPEAD_STAT_TOO_LARGE_PACKETS] = "too_large_packets",
    [SPEAD_STAT_BYTES] = "bytes",
    [SPEAD_STAT_LOG_SUPPRESSED] = "log_suppressed",
    [SPEAD_STAT_DIRECT_PACKETS] = "direct_packets",
};

const int spead_stat_modes[SPEAD_STAT_CORE_COUNT] = {
    [SPEAD_STAT_MAX_BATCH] = SPEAD_STAT_MAXIMUM,
};
