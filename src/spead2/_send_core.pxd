# Typed interface to the C send core: packetisation (csrc/send_packet.h),
# the stream queue and pacing (csrc/send_stream.h) and the writers
# (csrc/send_bytes.h, csrc/send_udp.h, csrc/send_tcp.h, csrc/send_inproc.h).
from libc.stdint cimport int64_t, uint8_t, uint64_t

from spead2._inproc cimport spead_inproc_queue
from spead2._tpool cimport tpool_t


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    struct sockaddr_storage:
        pass


cdef extern from "send_packet.h" nogil:
    int SEND_MIN_PACKET_SIZE
    ctypedef struct send_item:
        uint64_t id
        int immediate
        uint64_t value
        const uint8_t *data
        uint64_t length
    enum:
        SEND_LAYOUT_OK
        SEND_LAYOUT_PACKET_TOO_SMALL
        SEND_LAYOUT_HEAP_TOO_LARGE
        SEND_LAYOUT_BAD_ID
        SEND_LAYOUT_BAD_CNT
        SEND_LAYOUT_REPEAT_TOO_SMALL
    ctypedef struct send_layout:
        int heap_address_bits
        int repeat_pointers
        size_t packet_size
        size_t pointers_per_packet
        size_t n_items
        size_t n_pointers
        uint64_t payload_size
        uint64_t heap_length
        uint64_t n_packets
        uint64_t total_bytes
    int send_layout_compute(send_layout *layout, const send_item *items, size_t n_items,
                            int heap_address_bits, size_t max_packet_size, int repeat_pointers)
    const char *send_layout_status_string(int status)
    ctypedef struct send_packetizer:
        send_layout layout
    int send_packetizer_init(send_packetizer *pz, const send_item *items, size_t n_items,
                             int heap_address_bits, uint64_t cnt, size_t max_packet_size,
                             int repeat_pointers)
    size_t send_packetizer_next(send_packetizer *pz, uint8_t *hdr, size_t *payload_length)
    void send_packetizer_copy(send_packetizer *pz, uint8_t *out, size_t len)


cdef extern from "send_stream.h" nogil:
    ctypedef struct send_heap_spec:
        const send_item *items
        size_t n_items
        send_layout layout
        int64_t cnt
        size_t substream
        double wait_per_byte
    ctypedef struct send_req:
        send_req *next
        uint64_t token
        int mode
        int error
        uint64_t bytes
        size_t n_heaps
        send_heap_spec *heaps
        send_item items[1]
    ctypedef struct send_config:
        size_t max_packet_size
        double rate
        size_t burst_size
        double burst_rate_ratio
        size_t max_heaps
    ctypedef struct send_stream:
        size_t num_substreams
    send_req *send_req_new(size_t n_heaps, size_t n_items)
    void send_req_free(send_req *req)
    void send_stream_decref(send_stream *s)
    void send_stream_set_cnt_sequence(send_stream *s, uint64_t next, uint64_t step)
    int send_stream_send_sync(send_stream *s, send_req *req)
    int send_stream_send_async(send_stream *s, send_req *req)
    void send_stream_flush(send_stream *s)
    void send_stream_lock_idle(send_stream *s)
    void send_stream_unlock(send_stream *s)
    int send_stream_enable_notify(send_stream *s)
    send_req *send_stream_pop_done(send_stream *s)
    void send_stream_set_clock(send_stream *s, double (*clock)(void *ctx) noexcept nogil,
                               void (*sleep_until)(void *ctx, double t) noexcept nogil,
                               void *ctx)


cdef extern from "send_bytes.h" nogil:
    send_stream *send_bytes_stream_new(tpool_t *tp, const send_config *config)
    const uint8_t *send_bytes_data(send_stream *s, size_t *size)
    void send_bytes_copy_out(uint8_t *dst, const uint8_t *src, size_t size)


cdef extern from "send_udp.h" nogil:
    send_stream *send_udp_stream_new(tpool_t *tp, int fd, const sockaddr_storage *addrs,
                                     size_t n_addrs, socklen_t addrlen,
                                     const send_config *config)
    int send_make_sockaddr(int family, const char *host, int port, unsigned int flowinfo,
                           unsigned int scope_id, sockaddr_storage *out, socklen_t *len)


cdef extern from "send_tcp.h" nogil:
    send_stream *send_tcp_stream_new(tpool_t *tp, int fd, const send_config *config)


cdef extern from "send_inproc.h" nogil:
    send_stream *send_inproc_stream_new(tpool_t *tp, spead_inproc_queue *const *queues,
                                        size_t n_queues, const send_config *config)
