/* Capture files and the frames in them (see pcap.h). Every read is checked
 * against the bytes available first; lengths read from the file are
 * compared with what remains before any arithmetic that could overflow. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pcap.h"

#define CLASSIC_MAGIC_US 0xa1b2c3d4u
#define CLASSIC_MAGIC_NS 0xa1b23c4du
#define CLASSIC_MAGIC_KUZNETZOV 0xa1b2cd34u  /* modified pcap: 8 more bytes per record */
#define CLASSIC_HEADER 24

#define NG_SHB 0x0a0d0d0au
#define NG_IDB 0x00000001u
#define NG_SPB 0x00000003u
#define NG_EPB 0x00000006u
#define NG_BYTE_ORDER_MAGIC 0x1a2b3c4du
#define NG_BLOCK_MIN 12       /* type, total length, trailing total length */
#define NG_NO_RECORD (-1)     /* a block read that holds no packet: go on */
/* Far more than any capture has; a file of nothing but interface blocks
 * cannot make the table large. */
#define PCAP_MAX_INTERFACES 65536

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_VLAN 0x8100
#define ETHERTYPE_QINQ 0x88a8
#define ETHERTYPE_QINQ_OLD 0x9100   /* pre-802.1ad stacking, still seen */

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_DSTOPTS_ 60

static inline uint16_t load_be16(const uint8_t *p)
{
    return (uint16_t) (p[0] << 8 | p[1]);
}

static inline uint32_t load_u32(const uint8_t *p, int swapped)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

static inline uint16_t load_u16(const uint8_t *p, int swapped)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return swapped ? __builtin_bswap16(v) : v;
}

int pcap_link_supported(uint32_t linktype)
{
    switch (linktype) {
    case PCAP_LINK_ETHERNET:
    case PCAP_LINK_RAW_BSD:
    case PCAP_LINK_RAW_OPENBSD:
    case PCAP_LINK_RAW:
    case PCAP_LINK_LINUX_SLL:
    case PCAP_LINK_IPV4:
    case PCAP_LINK_IPV6:
    case PCAP_LINK_LINUX_SLL2:
        return 1;
    default:
        return 0;
    }
}

static int fail(pcap_cursor *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(pcap_cursor *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof(c->error), fmt, ap);
    va_end(ap);
    return code;
}

/* ------------------------------------------------------------------ */
/* pcapng */

/* The block at c->pos: its type and total length, checked against the file.
 * Section headers carry their own byte order, which they set. Returns 0 or
 * PCAP_NEXT_END / PCAP_NEXT_ERROR. */
static int ng_block(pcap_cursor *c, uint32_t *type, size_t *total)
{
    size_t left = c->len - c->pos;
    if (left == 0)
        return PCAP_NEXT_END;
    const uint8_t *p = c->data + c->pos;
    if (left < NG_BLOCK_MIN)
        return fail(c, PCAP_NEXT_ERROR, "block header cut short at byte %zu (%zu bytes left)",
                    c->pos, left);
    *type = load_u32(p, c->swapped);
    if (*type == NG_SHB) {
        /* the type reads the same in both orders; the body says which */
        if (left < 16)
            return fail(c, PCAP_NEXT_ERROR, "section header cut short at byte %zu", c->pos);
        uint32_t bom;
        memcpy(&bom, p + 8, 4);
        if (bom == NG_BYTE_ORDER_MAGIC)
            c->swapped = 0;
        else if (bom == __builtin_bswap32(NG_BYTE_ORDER_MAGIC))
            c->swapped = 1;
        else
            return fail(c, PCAP_NEXT_ERROR, "section header at byte %zu has no byte-order magic",
                        c->pos);
    }
    uint32_t n = load_u32(p + 4, c->swapped);
    if (n < NG_BLOCK_MIN || n % 4 != 0 || n > left)
        return fail(c, PCAP_NEXT_ERROR,
                    "block at byte %zu claims %lu bytes (%zu left in the file)", c->pos,
                    (unsigned long) n, left);
    *total = n;
    return 0;
}

static int ng_section(pcap_cursor *c, const uint8_t *p, size_t total)
{
    if (total < 28)
        return fail(c, PCAP_NEXT_ERROR, "section header at byte %zu is too short (%zu bytes)",
                    c->pos, total);
    uint16_t major = load_u16(p + 12, c->swapped);
    if (major != 1)
        return fail(c, PCAP_NEXT_ERROR, "section at byte %zu has pcapng version %u, not 1",
                    c->pos, (unsigned) major);
    c->n_interfaces = 0;    /* interface numbers start again in each section */
    return NG_NO_RECORD;
}

static int ng_interface(pcap_cursor *c, const uint8_t *p, size_t total)
{
    if (total < 20)
        return fail(c, PCAP_NEXT_ERROR, "interface block at byte %zu is too short (%zu bytes)",
                    c->pos, total);
    if (c->n_interfaces == PCAP_MAX_INTERFACES)
        return fail(c, PCAP_NEXT_ERROR, "section describes more than %d interfaces",
                    PCAP_MAX_INTERFACES);
    if (c->n_interfaces == c->cap_interfaces) {
        size_t cap = c->cap_interfaces ? 2 * c->cap_interfaces : 4;
        pcap_interface *in = realloc(c->interfaces, cap * sizeof(*in));
        if (!in)
            return fail(c, PCAP_NEXT_ERROR, "out of memory for interface descriptions");
        c->interfaces = in;
        c->cap_interfaces = cap;
    }
    pcap_interface *in = &c->interfaces[c->n_interfaces++];
    in->linktype = load_u16(p + 8, c->swapped);
    in->snaplen = load_u32(p + 12, c->swapped);
    return NG_NO_RECORD;
}

/* A packet block: ``iface`` and the packet's lengths, with the data at
 * ``body`` (``room`` bytes of block before the trailer). */
static int ng_packet(pcap_cursor *c, pcap_record *rec, uint32_t iface, const uint8_t *data,
                     size_t room, uint32_t caplen, uint32_t origlen)
{
    if (caplen > room)
        return fail(c, PCAP_NEXT_ERROR,
                    "packet block at byte %zu claims %lu captured bytes in a %zu-byte block",
                    c->pos, (unsigned long) caplen, room);
    if (iface >= c->n_interfaces)
        return fail(c, PCAP_NEXT_SKIP, "packet block at byte %zu names interface %lu, "
                    "but only %zu are described", c->pos, (unsigned long) iface,
                    c->n_interfaces);
    rec->linktype = c->interfaces[iface].linktype;
    if (!pcap_link_supported(rec->linktype))
        return fail(c, PCAP_NEXT_SKIP, "packet block at byte %zu is on interface %lu, whose "
                    "link type %lu is not supported", c->pos, (unsigned long) iface,
                    (unsigned long) rec->linktype);
    rec->data = data;
    rec->caplen = caplen;
    rec->origlen = origlen;
    return PCAP_NEXT_RECORD;
}

static int ng_next(pcap_cursor *c, pcap_record *rec)
{
    for (;;) {
        uint32_t type;
        size_t total;
        int st = ng_block(c, &type, &total);
        if (st != 0)
            return st;
        const uint8_t *p = c->data + c->pos;
        rec->offset = c->pos;
        switch (type) {
        case NG_SHB:
            st = ng_section(c, p, total);
            break;
        case NG_IDB:
            st = ng_interface(c, p, total);
            break;
        case NG_EPB:
            if (total < 32)
                return fail(c, PCAP_NEXT_ERROR,
                            "packet block at byte %zu is too short (%zu bytes)", c->pos, total);
            st = ng_packet(c, rec, load_u32(p + 8, c->swapped), p + 28, total - 32,
                           load_u32(p + 20, c->swapped), load_u32(p + 24, c->swapped));
            break;
        case NG_SPB: {
            if (total < 16)
                return fail(c, PCAP_NEXT_ERROR,
                            "simple packet block at byte %zu is too short (%zu bytes)", c->pos,
                            total);
            /* no captured length: the data is the original length, cut to
             * the block (which the interface's snap length also limits) */
            uint32_t origlen = load_u32(p + 8, c->swapped);
            size_t room = total - 16;
            st = ng_packet(c, rec, 0, p + 12, room, origlen < room ? origlen : (uint32_t) room,
                           origlen);
            break;
        }
        default:
            st = NG_NO_RECORD;  /* statistics, name resolution, custom...: not needed */
            break;
        }
        if (st == PCAP_NEXT_ERROR)
            return st;
        c->pos += total;
        if (st != NG_NO_RECORD)
            return st;
    }
}

/* Read the blocks before the first packet (section header, interfaces),
 * so that a file of an unsupported link type is refused at once. */
static int ng_init(pcap_cursor *c)
{
    c->format = PCAP_FORMAT_NG;
    for (;;) {
        uint32_t type;
        size_t total;
        int st = ng_block(c, &type, &total);
        if (st == PCAP_NEXT_END)
            return 0;
        if (st != 0)
            return -1;
        if (type == NG_EPB || type == NG_SPB)
            return 0;
        const uint8_t *p = c->data + c->pos;
        if (type == NG_SHB) {
            st = ng_section(c, p, total);
        } else if (type == NG_IDB) {
            st = ng_interface(c, p, total);
            if (st == NG_NO_RECORD) {
                uint32_t link = c->interfaces[c->n_interfaces - 1].linktype;
                if (!pcap_link_supported(link))
                    return fail(c, -1, "interface %zu has link type %lu, which is not supported",
                                c->n_interfaces - 1, (unsigned long) link);
            }
        } else {
            st = NG_NO_RECORD;
        }
        if (st != NG_NO_RECORD)
            return -1;
        c->pos += total;
    }
}

/* ------------------------------------------------------------------ */
/* classic pcap */

static int classic_init(pcap_cursor *c, uint32_t magic)
{
    c->format = PCAP_FORMAT_CLASSIC;
    c->record_header = magic == CLASSIC_MAGIC_KUZNETZOV ? 24 : 16;
    if (c->len < CLASSIC_HEADER)
        return fail(c, -1, "pcap file header cut short (%zu of %d bytes)", c->len,
                    CLASSIC_HEADER);
    uint16_t major = load_u16(c->data + 4, c->swapped);
    if (major != 2)
        return fail(c, -1, "pcap version %u is not supported", (unsigned) major);
    /* the upper bits may say whether frames end in a frame check sequence;
     * the UDP length makes that irrelevant */
    c->linktype = load_u32(c->data + 20, c->swapped) & 0xffff;
    if (!pcap_link_supported(c->linktype))
        return fail(c, -1, "link type %lu is not supported", (unsigned long) c->linktype);
    c->pos = CLASSIC_HEADER;
    return 0;
}

static int classic_next(pcap_cursor *c, pcap_record *rec)
{
    size_t left = c->len - c->pos;
    if (left == 0)
        return PCAP_NEXT_END;
    const uint8_t *p = c->data + c->pos;
    if (left < c->record_header)
        return fail(c, PCAP_NEXT_ERROR, "record header cut short at byte %zu (%zu bytes left)",
                    c->pos, left);
    uint32_t caplen = load_u32(p + 8, c->swapped);
    if (caplen > left - c->record_header)
        return fail(c, PCAP_NEXT_ERROR,
                    "record at byte %zu claims %lu bytes (%zu left in the file)", c->pos,
                    (unsigned long) caplen, left - c->record_header);
    rec->offset = c->pos;
    rec->linktype = c->linktype;
    rec->data = p + c->record_header;
    rec->caplen = caplen;
    rec->origlen = load_u32(p + 12, c->swapped);
    c->pos += c->record_header + caplen;
    return PCAP_NEXT_RECORD;
}

/* ------------------------------------------------------------------ */

int pcap_cursor_init(pcap_cursor *c, const uint8_t *data, size_t len)
{
    memset(c, 0, sizeof(*c));
    c->data = data;
    c->len = len;
    if (len == 0)
        return fail(c, -1, "the file is empty");
    if (len < 4)
        return fail(c, -1, "not a pcap or pcapng capture (%zu bytes)", len);
    uint32_t magic;
    memcpy(&magic, data, 4);
    if (magic == NG_SHB) {
        if (ng_init(c) == 0)
            return 0;
        pcap_cursor_destroy(c);     /* the caller has nothing to clean up */
        return -1;
    }
    static const uint32_t classic[] = {CLASSIC_MAGIC_US, CLASSIC_MAGIC_NS,
                                       CLASSIC_MAGIC_KUZNETZOV};
    for (size_t i = 0; i < sizeof(classic) / sizeof(classic[0]); i++) {
        if (magic == classic[i] || magic == __builtin_bswap32(classic[i])) {
            c->swapped = magic != classic[i];
            return classic_init(c, classic[i]);
        }
    }
    return fail(c, -1, "not a pcap or pcapng capture (it starts with %02x %02x %02x %02x)",
                data[0], data[1], data[2], data[3]);
}

void pcap_cursor_destroy(pcap_cursor *c)
{
    free(c->interfaces);
    c->interfaces = NULL;
    c->n_interfaces = c->cap_interfaces = 0;
}

int pcap_cursor_next(pcap_cursor *c, pcap_record *rec)
{
    if (c->pos > c->len)    /* a previous error: stay ended */
        return PCAP_NEXT_ERROR;
    int st = c->format == PCAP_FORMAT_NG ? ng_next(c, rec) : classic_next(c, rec);
    if (st == PCAP_NEXT_ERROR)
        c->pos = c->len + 1;
    return st;
}

/* ------------------------------------------------------------------ */
/* frames */

static int truncated(pcap_udp *out, size_t needed, size_t captured)
{
    out->why = "headers cut short";
    out->needed = needed;
    out->captured = captured;
    return PCAP_FRAME_TRUNCATED;
}

/* UDP at ``off``: the datagram, by its own length field. */
static int parse_udp(const uint8_t *f, size_t caplen, size_t off, pcap_udp *out)
{
    if (caplen - off < 8)
        return truncated(out, off + 8, caplen);
    const uint8_t *u = f + off;
    size_t udp_len = load_be16(u + 4);
    out->src_port = load_be16(u);
    out->dst_port = load_be16(u + 2);
    if (udp_len < 8) {  /* cannot even hold its header: nothing to trust */
        truncated(out, 8, udp_len);
        out->why = "UDP length field below the 8-byte header";
        return PCAP_FRAME_TRUNCATED;
    }
    if (udp_len > caplen - off) {
        truncated(out, off + udp_len, caplen);
        out->why = "UDP datagram cut short";
        return PCAP_FRAME_TRUNCATED;
    }
    out->payload = u + 8;
    out->payload_len = udp_len - 8;
    return PCAP_FRAME_UDP;
}

static int parse_ipv4(const uint8_t *f, size_t caplen, size_t off, pcap_udp *out)
{
    if (caplen - off < 20)
        return truncated(out, off + 20, caplen);
    const uint8_t *ip = f + off;
    size_t ihl = (size_t) (ip[0] & 0x0f) * 4;
    if (ihl < 20)
        return PCAP_FRAME_OTHER;        /* not a valid header: no datagram here */
    if (caplen - off < ihl)
        return truncated(out, off + ihl, caplen);
    out->ip_version = 4;
    memcpy(out->src, ip + 12, 4);
    memcpy(out->dst, ip + 16, 4);
    if (ip[9] != IPPROTO_UDP_)
        return PCAP_FRAME_OTHER;
    /* more fragments, or a non-zero offset; DF alone is a whole datagram */
    if (load_be16(ip + 6) & 0x3fff)
        return PCAP_FRAME_FRAGMENT;
    return parse_udp(f, caplen, off + ihl, out);
}

static int parse_ipv6(const uint8_t *f, size_t caplen, size_t off, pcap_udp *out)
{
    if (caplen - off < 40)
        return truncated(out, off + 40, caplen);
    const uint8_t *ip = f + off;
    out->ip_version = 6;
    memcpy(out->src, ip + 8, 16);
    memcpy(out->dst, ip + 24, 16);
    int next = ip[6];
    off += 40;
    /* every extension header is at least 8 bytes, so this ends */
    for (;;) {
        switch (next) {
        case IPPROTO_UDP_:
            return parse_udp(f, caplen, off, out);
        case IPPROTO_HOPOPTS_:
        case IPPROTO_ROUTING_:
        case IPPROTO_DSTOPTS_: {
            if (caplen - off < 8)
                return truncated(out, off + 8, caplen);
            size_t len = ((size_t) f[off + 1] + 1) * 8;
            if (caplen - off < len)
                return truncated(out, off + len, caplen);
            next = f[off];
            off += len;
            break;
        }
        case IPPROTO_FRAGMENT_: {
            if (caplen - off < 8)
                return truncated(out, off + 8, caplen);
            /* an "atomic fragment" (offset 0, no more) holds the whole
             * datagram (RFC 6946): read on */
            if (load_be16(f + off + 2) & 0xfff9)
                return PCAP_FRAME_FRAGMENT;
            next = f[off];
            off += 8;
            break;
        }
        default:
            return PCAP_FRAME_OTHER;
        }
    }
}

static int parse_ip(const uint8_t *f, size_t caplen, size_t off, pcap_udp *out)
{
    if (caplen - off < 1)
        return truncated(out, off + 1, caplen);
    switch (f[off] >> 4) {
    case 4:
        return parse_ipv4(f, caplen, off, out);
    case 6:
        return parse_ipv6(f, caplen, off, out);
    default:
        return PCAP_FRAME_OTHER;
    }
}

/* An ethertype at ``off``, then its payload, through any VLAN tags. */
static int parse_ethertype(const uint8_t *f, size_t caplen, size_t off, pcap_udp *out)
{
    for (;;) {
        if (caplen - off < 2)
            return truncated(out, off + 2, caplen);
        uint16_t type = load_be16(f + off);
        off += 2;
        switch (type) {
        case ETHERTYPE_IPV4:
            if (caplen - off < 1)
                return truncated(out, off + 1, caplen);
            return (f[off] >> 4) == 4 ? parse_ipv4(f, caplen, off, out) : PCAP_FRAME_OTHER;
        case ETHERTYPE_IPV6:
            if (caplen - off < 1)
                return truncated(out, off + 1, caplen);
            return (f[off] >> 4) == 6 ? parse_ipv6(f, caplen, off, out) : PCAP_FRAME_OTHER;
        case ETHERTYPE_VLAN:
        case ETHERTYPE_QINQ:
        case ETHERTYPE_QINQ_OLD:
            if (caplen - off < 2)
                return truncated(out, off + 2, caplen);
            /* deeper tags are walked but not kept */
            if (out->n_vlans < PCAP_MAX_VLANS)
                out->vlans[out->n_vlans++] = load_be16(f + off) & 0x0fff;
            off += 2;
            break;
        default:
            return PCAP_FRAME_OTHER;    /* ARP, 802.3 lengths, ... */
        }
    }
}

int pcap_parse_frame(uint32_t linktype, const uint8_t *f, size_t caplen, pcap_udp *out)
{
    out->n_vlans = 0;
    out->ip_version = 0;
    switch (linktype) {
    case PCAP_LINK_ETHERNET:
        if (caplen < 14)
            return truncated(out, 14, caplen);
        return parse_ethertype(f, caplen, 12, out);
    case PCAP_LINK_LINUX_SLL:
        if (caplen < 16)
            return truncated(out, 16, caplen);
        return parse_ethertype(f, caplen, 14, out);
    case PCAP_LINK_LINUX_SLL2:
        if (caplen < 20)
            return truncated(out, 20, caplen);
        /* the protocol comes first; the payload follows the 20-byte header */
        {
            uint16_t type = load_be16(f);
            if (type == ETHERTYPE_IPV4 || type == ETHERTYPE_IPV6)
                return parse_ip(f, caplen, 20, out);
            if (type == ETHERTYPE_VLAN || type == ETHERTYPE_QINQ || type == ETHERTYPE_QINQ_OLD) {
                /* a tag put back by libpcap sits at the start of the payload
                 * as it would in Ethernet: TCI, then the real type */
                if (caplen < 22)
                    return truncated(out, 22, caplen);
                out->vlans[0] = load_be16(f + 20) & 0x0fff;
                out->n_vlans = 1;
                return parse_ethertype(f, caplen, 22, out);
            }
            return PCAP_FRAME_OTHER;
        }
    case PCAP_LINK_RAW:
    case PCAP_LINK_RAW_BSD:
    case PCAP_LINK_RAW_OPENBSD:
        return parse_ip(f, caplen, 0, out);
    case PCAP_LINK_IPV4:
        if (caplen < 1)
            return truncated(out, 1, caplen);
        return (f[0] >> 4) == 4 ? parse_ipv4(f, caplen, 0, out) : PCAP_FRAME_OTHER;
    case PCAP_LINK_IPV6:
        if (caplen < 1)
            return truncated(out, 1, caplen);
        return (f[0] >> 4) == 6 ? parse_ipv6(f, caplen, 0, out) : PCAP_FRAME_OTHER;
    default:
        return PCAP_FRAME_OTHER;
    }
}
