/* Capture files (classic pcap and pcapng) and the UDP datagrams in them.
 *
 * Sans-IO: everything here works on bytes already in memory (the reader
 * maps the file) and never reads outside them. Two layers:
 *
 * - the container: ``pcap_cursor`` walks the records of a file, whatever
 *   its format, byte order and (pcapng) number of sections and interfaces,
 *   and hands out each frame with its link type;
 * - the frame: ``pcap_parse_frame`` peels the link layer (with any VLAN
 *   tags), IPv4 or IPv6 (with extension headers) and UDP, and says what the
 *   frame is: a whole UDP datagram, a fragment, a truncated record, or
 *   something else.
 */
#ifndef SPEAD2_PCAP_H
#define SPEAD2_PCAP_H

#include <stddef.h>
#include <stdint.h>

/* Link types (the LINKTYPE_* values of capture files) */
#define PCAP_LINK_ETHERNET 1
#define PCAP_LINK_RAW_BSD 12     /* DLT_RAW as most BSDs number it */
#define PCAP_LINK_RAW_OPENBSD 14 /* DLT_RAW on OpenBSD and BSD/OS */
#define PCAP_LINK_RAW 101
#define PCAP_LINK_LINUX_SLL 113
#define PCAP_LINK_IPV4 228
#define PCAP_LINK_IPV6 229
#define PCAP_LINK_LINUX_SLL2 276

/* Whether frames of this link type can be parsed. */
int pcap_link_supported(uint32_t linktype);

/* ---- the container ---- */

enum {
    PCAP_FORMAT_CLASSIC = 1,
    PCAP_FORMAT_NG
};

/* What pcap_cursor_next found. */
enum {
    PCAP_NEXT_RECORD = 0,   /* a frame */
    PCAP_NEXT_SKIP,         /* a record that cannot be used; the reason is in ``error`` */
    PCAP_NEXT_END,          /* the end of the file */
    PCAP_NEXT_ERROR         /* the file cannot be read further; the reason is in ``error`` */
};

#define PCAP_ERROR_LEN 160

typedef struct {
    uint32_t linktype;
    uint32_t snaplen;       /* 0: no limit */
} pcap_interface;

typedef struct {
    const uint8_t *data;    /* the whole file */
    size_t len;
    size_t pos;             /* the next record or block */
    int format;
    int swapped;            /* multi-byte fields are in the other byte order */
    /* classic */
    uint32_t linktype;
    size_t record_header;   /* 16, or 24 for the modified (Kuznetzov) format */
    /* pcapng: the interfaces of the current section */
    pcap_interface *interfaces;
    size_t n_interfaces, cap_interfaces;
    char error[PCAP_ERROR_LEN];
} pcap_cursor;

typedef struct {
    uint32_t linktype;
    const uint8_t *data;
    size_t caplen;          /* bytes captured (all within the file) */
    size_t origlen;         /* bytes on the wire */
    size_t offset;          /* where the record starts in the file, for messages */
} pcap_record;

/* Check the file header and read (pcapng) the interfaces described before
 * the first packet. Returns 0, or -1 with the reason in ``c->error``: not a
 * capture, a header cut short, an unsupported version or link type (and
 * nothing to destroy). The cursor refers to ``data``, which must outlive
 * it. */
int pcap_cursor_init(pcap_cursor *c, const uint8_t *data, size_t len);
void pcap_cursor_destroy(pcap_cursor *c);
/* The next record. A length field that points past the end of the file or
 * is shorter than its own header gives PCAP_NEXT_ERROR, and so does every
 * later call. */
int pcap_cursor_next(pcap_cursor *c, pcap_record *rec);

/* ---- the frame ---- */

/* What a frame is. */
enum {
    PCAP_FRAME_UDP = 0,     /* a whole UDP datagram */
    PCAP_FRAME_OTHER,       /* not IP, or not UDP: of no interest */
    PCAP_FRAME_FRAGMENT,    /* an IP fragment */
    PCAP_FRAME_TRUNCATED    /* captured bytes end before the headers or the datagram do */
};

#define PCAP_MAX_VLANS 8

typedef struct {
    int ip_version;         /* 4 or 6 */
    uint8_t src[16], dst[16];   /* IPv4 addresses use the first 4 bytes */
    uint16_t src_port, dst_port;
    int n_vlans;            /* tags kept, outermost first (deeper ones are only walked) */
    uint16_t vlans[PCAP_MAX_VLANS];
    const uint8_t *payload; /* the UDP payload */
    size_t payload_len;
    /* for PCAP_FRAME_TRUNCATED: what is wrong, the bytes needed and the
     * bytes there were */
    const char *why;
    size_t needed, captured;
} pcap_udp;

/* Parse one frame. PCAP_FRAME_UDP fills every field of ``out``. */
int pcap_parse_frame(uint32_t linktype, const uint8_t *frame, size_t caplen, pcap_udp *out);

#endif
