/* Receive statistics: one array of counters per stream, in this order.
 * The first nine are spead2's own statistics; the rest count what this
 * library drops, by reason. Custom statistics follow SPEAD_STAT_CORE_COUNT. */
#ifndef SPEAD2_STATS_H
#define SPEAD2_STATS_H

enum spead_stat_index {
    SPEAD_STAT_HEAPS = 0,               /* heaps handed on (incomplete ones included) */
    SPEAD_STAT_INCOMPLETE_HEAPS_EVICTED,
    SPEAD_STAT_INCOMPLETE_HEAPS_FLUSHED,
    SPEAD_STAT_PACKETS,                 /* decoded packets offered to assembly */
    SPEAD_STAT_BATCHES,
    SPEAD_STAT_MAX_BATCH,               /* merged by maximum, not sum */
    SPEAD_STAT_SINGLE_PACKET_HEAPS,
    SPEAD_STAT_SEARCH_DIST,             /* heap look-up work, for tuning */
    SPEAD_STAT_WORKER_BLOCKED,          /* times a reader waited for room in the ring */
    SPEAD_STAT_BAD_PACKETS,             /* could not be decoded */
    SPEAD_STAT_REJECTED_PACKETS,        /* decoded, but refused by assembly */
    SPEAD_STAT_DUPLICATE_PACKETS,       /* payload that had already arrived */
    SPEAD_STAT_TOO_LARGE_PACKETS,       /* datagrams over the reader's max_size */
    SPEAD_STAT_BYTES,                   /* payload bytes accepted */
    SPEAD_STAT_LOG_SUPPRESSED,          /* log lines dropped because the queue was full */
    SPEAD_STAT_DIRECT_PACKETS,          /* payloads the kernel wrote straight into heap memory */
    SPEAD_STAT_CORE_COUNT
};

/* How two values of a statistic combine (for batches and for adding
 * snapshots). */
enum spead_stat_mode {
    SPEAD_STAT_COUNTER = 0,             /* sum */
    SPEAD_STAT_MAXIMUM = 1              /* larger */
};

/* Names (as Python reports them) and modes of the core statistics. */
extern const char *const spead_stat_names[SPEAD_STAT_CORE_COUNT];
extern const int spead_stat_modes[SPEAD_STAT_CORE_COUNT];

#endif
