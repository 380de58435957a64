# Typed interface to the C receive core: finished heaps (csrc/heap.h), heap
# assembly (csrc/assembler.h, csrc/live_heap.h), statistics (csrc/stats.h),
# the stream with its ring, log queue and readers (csrc/recv_stream.h).
from libc.stdint cimport int64_t, uint8_t, uint64_t

from spead2._alloc cimport spead_allocator
from spead2._tpool cimport tpool_t
from spead2._wire cimport spead_packet
from spead2._inproc cimport spead_inproc_queue


cdef extern from "heap.h" nogil:
    ctypedef struct spead_range:
        uint64_t start
        uint64_t end

    ctypedef struct spead_heap:
        int64_t cnt
        int heap_address_bits
        int bug_compat
        int contiguous
        int64_t heap_length
        uint64_t received_length
        uint64_t payload_size
        uint8_t *payload
        void *handle
        spead_allocator *alloc
        uint64_t *pointers
        size_t n_pointers
        spead_range *ranges
        size_t n_ranges

    void spead_heap_free(spead_heap *h)
    void spead_heap_release_payload(spead_heap *h)
    int spead_heap_has_ctrl(const spead_heap *h, uint64_t value)


cdef extern from "stats.h" nogil:
    enum:
        SPEAD_STAT_HEAPS
        SPEAD_STAT_INCOMPLETE_HEAPS_EVICTED
        SPEAD_STAT_INCOMPLETE_HEAPS_FLUSHED
        SPEAD_STAT_PACKETS
        SPEAD_STAT_BATCHES
        SPEAD_STAT_MAX_BATCH
        SPEAD_STAT_SINGLE_PACKET_HEAPS
        SPEAD_STAT_SEARCH_DIST
        SPEAD_STAT_WORKER_BLOCKED
        SPEAD_STAT_BAD_PACKETS
        SPEAD_STAT_REJECTED_PACKETS
        SPEAD_STAT_DUPLICATE_PACKETS
        SPEAD_STAT_TOO_LARGE_PACKETS
        SPEAD_STAT_BYTES
        SPEAD_STAT_LOG_SUPPRESSED
        SPEAD_STAT_CORE_COUNT
    enum:
        SPEAD_STAT_COUNTER
        SPEAD_STAT_MAXIMUM
    const char *const spead_stat_names[]
    const int spead_stat_modes[]


cdef extern from "live_heap.h" nogil:
    enum:
        SPEAD_FEED_ACCEPTED
        SPEAD_FEED_STOP
        SPEAD_FEED_DUPLICATE
        SPEAD_FEED_NO_HEAP_LENGTH
        SPEAD_FEED_HEAP_TOO_LARGE
        SPEAD_FEED_OUT_OF_ORDER
        SPEAD_FEED_LENGTH_MISMATCH
        SPEAD_FEED_LENGTH_TOO_SMALL
        SPEAD_FEED_FLAVOUR_MISMATCH
        SPEAD_FEED_PAST_HEAP_LENGTH
        SPEAD_FEED_OVERLAP
        SPEAD_FEED_POINTERS_LIMIT
        SPEAD_FEED_NO_MEMORY
        SPEAD_FEED_RESULT_COUNT
    const char *spead_feed_result_string(int result)


cdef extern from "assembler.h" nogil:
    ctypedef struct spead_assembler_config:
        size_t max_heaps
        size_t substreams
        uint64_t max_heap_size
        int bug_compat
        int allow_out_of_order
        int allow_unsized_heaps
        int stop_on_stop_item
        int keep_payload_ranges

    enum:
        SPEAD_HEAP_COMPLETED
        SPEAD_HEAP_EVICTED
        SPEAD_HEAP_FLUSHED

    ctypedef void (*spead_heap_sink)(void *ctx, spead_heap *heap, int exit)
    ctypedef struct spead_assembler:
        pass

    spead_assembler *spead_assembler_new(const spead_assembler_config *config,
                                         spead_allocator *alloc, spead_heap_sink sink, void *ctx)
    void spead_assembler_free(spead_assembler *a)
    void spead_assembler_set_memcpy(spead_assembler *a, int nontemporal)
    int spead_assembler_feed(spead_assembler *a, const spead_packet *pkt, uint64_t *stats)
    void spead_assembler_flush(spead_assembler *a, uint64_t *stats)
    size_t spead_assembler_live(const spead_assembler *a)


cdef extern from "logq.h" nogil:
    enum:
        SPEAD_LOG_LEN
    ctypedef struct spead_log_entry:
        int level
        char text[200]


cdef extern from "recv_stream.h" nogil:
    ctypedef struct recv_stream_config:
        spead_assembler_config assembly
        size_t ring_heaps
        int contiguous_only
        int explicit_start
        size_t n_stats

    ctypedef struct recv_stream:
        pass

    recv_stream *recv_stream_new(tpool_t *tp, const recv_stream_config *config,
                                 spead_allocator *alloc)
    void recv_stream_decref(recv_stream *s)
    void recv_stream_set_allocator(recv_stream *s, spead_allocator *alloc)
    void recv_stream_set_memcpy(recv_stream *s, int nontemporal)
    void recv_stream_start(recv_stream *s)
    void recv_stream_stop(recv_stream *s)
    int recv_stream_pop(recv_stream *s, spead_heap **out, int timeout_ms)
    void recv_stream_get_stats(recv_stream *s, uint64_t *out)
    int recv_stream_fd(recv_stream *s)
    size_t recv_stream_ring_size(recv_stream *s)
    int recv_add_buffer_reader(recv_stream *s, const uint8_t *data, size_t len)
    int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size)
    int recv_add_inproc_reader(recv_stream *s, spead_inproc_queue *queue)
    int recv_stream_logs_pending(recv_stream *s)
    size_t recv_stream_take_logs(recv_stream *s, spead_log_entry *out, size_t max)
    size_t recv_stream_discard_logs(recv_stream *s)
    void recv_stream_set_log_level(recv_stream *s, int level)
    enum:
        RECV_PCAP_BAD_FILE
        RECV_PCAP_BAD_FILTER
    int recv_add_udp_pcap_file_reader(recv_stream *s, const char *path, const char *filter,
                                      char *err, size_t err_len)
