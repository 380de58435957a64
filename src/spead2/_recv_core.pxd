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


cdef extern from "chunk.h" nogil:
    ctypedef struct spead_chunk:
        int64_t chunk_id
        uint64_t stream_id
        uint8_t *present
        size_t present_size
        uint8_t *data
        size_t data_size
        uint8_t *extra
        size_t extra_size
        void *owner
        spead_chunk *next

    ctypedef struct spead_chunk_place_data:
        pass
    ctypedef void (*spead_chunk_place_fn)(spead_chunk_place_data *data, size_t data_size)
    ctypedef void (*spead_chunk_place_user_fn)(spead_chunk_place_data *data, size_t data_size,
                                               void *user_data)


cdef extern from "chunk_ring.h" nogil:
    ctypedef struct spead_chunk_ring:
        int data_fd
        int space_fd
        size_t capacity

    spead_chunk_ring *spead_chunk_ring_new(size_t capacity)
    void spead_chunk_ring_incref(spead_chunk_ring *r)
    void spead_chunk_ring_decref(spead_chunk_ring *r)
    int spead_chunk_ring_put(spead_chunk_ring *r, spead_chunk *c, int timeout_ms)
    int spead_chunk_ring_get(spead_chunk_ring *r, spead_chunk **out, int timeout_ms)
    int spead_chunk_ring_stop(spead_chunk_ring *r)
    void spead_chunk_ring_add_producer(spead_chunk_ring *r)
    int spead_chunk_ring_remove_producer(spead_chunk_ring *r)
    size_t spead_chunk_ring_size(spead_chunk_ring *r)
    int spead_chunk_ring_is_stopped(spead_chunk_ring *r)


cdef extern from "chunk_stream.h" nogil:
    ctypedef struct spead_chunk_manager:
        spead_chunk *(*allocate)(void *ctx, int64_t chunk_id)
        void (*ready)(void *ctx, spead_chunk *c)
        void (*head_updated)(void *ctx, uint64_t head)
        void (*after_batch)(void *ctx)
        void (*stop)(void *ctx)
        void (*ended)(void *ctx)
        void (*release)(void *ctx)
        void *ctx

    ctypedef struct spead_chunker_config:
        const uint64_t *item_ids
        size_t n_items
        size_t max_chunks
        size_t max_heap_extra
        size_t packet_presence_payload_size
        spead_chunk_place_fn place
        spead_chunk_place_user_fn place_user
        void *place_user_data
        uint64_t stream_id
        size_t stat_too_old
        size_t stat_rejected

    ctypedef struct spead_chunk_ring_pair:
        pass

    spead_chunk_ring_pair *spead_chunk_ring_pair_new(spead_chunk_ring *data,
                                                     spead_chunk_ring *free)
    spead_chunk_manager spead_chunk_ring_pair_manager(spead_chunk_ring_pair *p)
    spead_chunk *spead_chunk_ring_pair_take_released(spead_chunk_ring_pair *p)


cdef extern from "recv_stream.h" nogil:
    ctypedef struct recv_stream_config:
        spead_assembler_config assembly
        size_t ring_heaps
        int contiguous_only
        int explicit_start
        size_t n_stats
        const uint8_t *stat_modes
        const spead_chunker_config *chunks
        spead_chunk_manager chunk_manager

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
    int recv_add_tcp_reader(recv_stream *s, int listen_fd, size_t max_size)
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


cdef extern from "chunk_place.h" nogil:
    enum:
        SPEAD_PLACE_MAX_AXES
    ctypedef struct spead_place_axis:
        int from_chunk_item
        size_t item
        uint64_t divisor
        uint64_t count
    ctypedef struct spead_place_rule:
        size_t chunk_item
        uint64_t chunk_step
        size_t n_axes
        spead_place_axis axes[8]
        size_t length_item
        uint64_t heap_size
        int extra_value
    void spead_place_by_rule(spead_chunk_place_data *d, size_t size, void *user)


cdef extern from "chunk_group.h" nogil:
    enum:
        SPEAD_EVICT_LOSSY
        SPEAD_EVICT_LOSSLESS
    ctypedef struct spead_chunk_group:
        pass
    spead_chunk_group *spead_chunk_group_new(size_t max_chunks, int eviction_mode,
                                             spead_chunk_ring *data, spead_chunk_ring *free_ring)
    void spead_chunk_group_incref(spead_chunk_group *g)
    void spead_chunk_group_decref(spead_chunk_group *g)
    int spead_chunk_group_add_member(spead_chunk_group *g, size_t index,
                                     spead_chunk_manager *out)
    void spead_chunk_group_set_member_stream(spead_chunk_group *g, size_t index, recv_stream *s)
    void spead_chunk_group_stop(spead_chunk_group *g)
    spead_chunk *spead_chunk_group_take_released(spead_chunk_group *g)
