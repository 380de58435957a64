/* Live capture: every UDP datagram that arrives on a set of bound kernel
 * sockets, before any SPEAD processing, written to a capture file (see
 * pcap_write.h) with the kernel's receive timestamp.
 *
 * The caller creates, binds and (for multicast) joins the sockets; the
 * capture sets the options it needs on them (receive timestamps in
 * nanoseconds, the destination address of each datagram, the socket's
 * drop counter, and coalesced receives where the kernel offers them) and
 * makes them non-blocking. Datagrams are taken in batches (recvmmsg) and
 * their records gathered in large buffers, written out whole by a thread of
 * the capture's own as each fills (receiving goes on meanwhile), and on
 * capture_flush.
 *
 * Everything here is meant to run without the GIL: capture_run returns to
 * the caller at least every ``timeout_ms``, and at once when a signal
 * interrupts a wait, so that the caller can check for Ctrl-C and show
 * progress.
 */
#ifndef SPEAD2_CAPTURE_H
#define SPEAD2_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct capture capture;

typedef struct {
    uint64_t packets;       /* datagrams written */
    uint64_t bytes;         /* their UDP payload bytes */
    uint64_t drops;         /* datagrams the sockets dropped (SO_RXQ_OVFL), as last reported */
    uint64_t file_bytes;    /* bytes written to the file, header included */
    uint64_t truncated;     /* datagrams larger than a receive slot, written cut short */
} capture_stats;

/* What capture_run stopped for. */
enum {
    CAPTURE_PERIOD = 0,     /* ``timeout_ms`` passed */
    CAPTURE_LIMIT,          /* ``limit`` datagrams have been written (or buffered) */
    CAPTURE_SIGNAL          /* a wait was interrupted by a signal */
};

/* A capture of the datagrams of sockets ``fds[0..n_fds)`` into file
 * descriptor ``out_fd`` (neither is closed by the capture), in ``format``
 * (PCAP_FORMAT_CLASSIC or PCAP_FORMAT_NG). The file header is buffered at
 * once. Returns NULL with the reason in ``err`` if a socket is not a bound
 * IPv4 or IPv6 UDP socket, an option cannot be set, or memory runs out.
 * ``gro``: ask the kernel for coalesced datagrams (split again here). */
capture *capture_create(const int *fds, size_t n_fds, int out_fd, int format, int gro,
                        char *err, size_t err_len);
/* Receive and record until ``limit`` datagrams have been recorded in
 * total (0: no limit), ``timeout_ms`` milliseconds have passed, or a
 * signal interrupts a wait. Returns a CAPTURE_* value, or -errno if
 * receiving or writing failed. */
int capture_run(capture *c, uint64_t limit, int timeout_ms);
/* Write out everything buffered. Returns 0 or -errno. */
int capture_flush(capture *c);
void capture_get_stats(const capture *c, capture_stats *out);
/* Which socket a failure of capture_run concerned, for messages: its index
 * in ``fds``, or -1 for the file. */
int capture_failed_socket(const capture *c);
void capture_destroy(capture *c);

#endif
