# Typed interface to the C send core: packetisation (csrc/send_packet.h),
# the stream queue and pacing (csrc/send_stream.h) and the writers
# (csrc/send_bytes.h, csrc/send_udp.h).
from libc.stdint cimport int64_t, uint8_t, uint64_t

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
    ctypedef struct send_layout:
        int heap_address_bits
        size_t packet_size
        size_t pointers_per_packet
        size_t n_items
        size_t n_pointers
        uint64_t payload_size
        uint64_t heap_length
        uint64_t n_packets
        uint64_t total_bytes
    int send_layout_compute(send_layout *layout, const send_item *items, size_t n_items,
                            int heap_address_bits, size_t max_packet_size)
    const char *send_layout_status_string(int status)
    ctypedef struct send_packetizer:
        send_layout layout
    int send_packetizer_init(send_packetizer *pz, const send_item *items, size_t n_items,
                             int heap_address_bits, uint64_t cnt, size_t max_packet_size)
    size_t send_packetizer_next(send_packetizer *pz, uint8_t *hdr, size_t *payload_length)
    void send_packetizer_copy(send_packetizer *pz, uint8_t *out, size_t len)


cdef extern from "send_stream.h" nogil:
    ctypedef struct send_req:
        send_req *next
        uint64_t token
        int64_t cnt
        int heap_address_bits
        int error
        size_t n_items
        send_item items[1]
    ctypedef struct send_stream:
        pass
    send_req *send_req_new(size_t n_items)
    void send_req_free(send_req *req)
    void send_stream_decref(send_stream *s)
    int send_stream_send_sync(send_stream *s, send_req *req)
    int send_stream_send_async(send_stream *s, send_req *req)
    void send_stream_flush(send_stream *s)
    void send_stream_lock_idle(send_stream *s)
    void send_stream_unlock(send_stream *s)
    int send_stream_enable_notify(send_stream *s)
    send_req *send_stream_pop_done(send_stream *s)


cdef extern from "send_bytes.h" nogil:
    send_stream *send_bytes_stream_new(tpool_t *tp, size_t max_packet_size, double rate,
                                       size_t burst_size, size_t max_heaps)
    const uint8_t *send_bytes_data(send_stream *s, size_t *size)
    void send_bytes_copy_out(uint8_t *dst, const uint8_t *src, size_t size)


cdef extern from "send_udp.h" nogil:
    send_stream *send_udp_stream_new(tpool_t *tp, int fd, const sockaddr *addr,
                                     socklen_t addrlen, size_t max_packet_size, double rate,
                                     size_t burst_size, size_t max_heaps)
    int send_make_sockaddr(int family, const char *host, int port, unsigned int flowinfo,
                           unsigned int scope_id, sockaddr_storage *out, socklen_t *len)
