/* Writing capture files (see pcap_write.h). */
#include <string.h>

#include "pcap_write.h"

#define CLASSIC_MAGIC_NS 0xa1b23c4du
#define CLASSIC_SNAPLEN 262144u     /* as tcpdump's default: more than any frame here */
#define NG_SHB 0x0a0d0d0au
#define NG_IDB 0x00000001u
#define NG_EPB 0x00000006u
#define NG_BYTE_ORDER_MAGIC 0x1a2b3c4du
#define NG_OPT_IF_TSRESOL 9
#define NG_EPB_HEAD 28              /* type, length, interface, timestamp (2), lengths (2) */

#define LINKTYPE_ETHERNET 1
#define ETH_HEADER 14
#define IPV4_HEADER 20
#define IPV6_HEADER 40
#define UDP_HEADER 8

static inline void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void put_u16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}

/* The one's-complement sum (RFC 1071) of ``len`` bytes, added to ``sum``,
 * in the host's byte order: the sum does not depend on the order its
 * 16-bit words are read in, as long as the result is stored the same way. */
static uint64_t sum_words(uint64_t sum, const uint8_t *p, size_t len)
{
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        sum += w;
        p += 2;
        len -= 2;
    }
    if (len) {
        /* the odd byte is the high half of a word padded with zero */
        uint8_t last[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        sum += w;
    }
    return sum;
}

/* ``sum`` folded to 16 bits and complemented, ready to store with put_u16. */
static uint16_t finish_checksum(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t) ~sum;
}

size_t pcapw_max_payload(int ip_version)
{
    return ip_version == 6 ? PCAPW_MAX_PAYLOAD_IPV6 : PCAPW_MAX_PAYLOAD_IPV4;
}

size_t pcapw_file_header(int format, uint8_t *out)
{
    if (format == PCAP_FORMAT_NG) {
        /* section header: no options; the section length is unknown (-1) */
        put_u32(out, NG_SHB);
        put_u32(out + 4, 28);
        put_u32(out + 8, NG_BYTE_ORDER_MAGIC);
        put_u16(out + 12, 1);
        put_u16(out + 14, 0);
        memset(out + 16, 0xff, 8);
        put_u32(out + 24, 28);
        /* interface 0: Ethernet, no snap length, if_tsresol = 9 (ns) */
        uint8_t *idb = out + 28;
        put_u32(idb, NG_IDB);
        put_u32(idb + 4, 32);
        put_u16(idb + 8, LINKTYPE_ETHERNET);
        put_u16(idb + 10, 0);
        put_u32(idb + 12, 0);
        put_u16(idb + 16, NG_OPT_IF_TSRESOL);
        put_u16(idb + 18, 1);
        memset(idb + 20, 0, 4);
        idb[20] = 9;
        put_u32(idb + 24, 0);   /* opt_endofopt */
        put_u32(idb + 28, 32);
        return 60;
    }
    put_u32(out, CLASSIC_MAGIC_NS);
    put_u16(out + 4, 2);
    put_u16(out + 6, 4);
    put_u32(out + 8, 0);        /* thiszone */
    put_u32(out + 12, 0);       /* sigfigs */
    put_u32(out + 16, CLASSIC_SNAPLEN);
    put_u32(out + 20, LINKTYPE_ETHERNET);
    return 24;
}

static size_t frame_size(int ip_version, size_t payload_len)
{
    return ETH_HEADER + (ip_version == 6 ? IPV6_HEADER : IPV4_HEADER) + UDP_HEADER
           + payload_len;
}

size_t pcapw_record_size(int format, int ip_version, size_t payload_len)
{
    size_t frame = frame_size(ip_version, payload_len);
    if (format == PCAP_FORMAT_NG)
        return NG_EPB_HEAD + frame + (-frame & 3) + 4;
    return 16 + frame;
}

/* The Ethernet header: a made-up source, and the destination's multicast
 * MAC (RFC 1112, RFC 2464) or a made-up unicast one. */
static uint8_t *write_ethernet(const pcap_udp *d, uint8_t *p)
{
    static const uint8_t unicast_dst[6] = {0x02, 0, 0, 0, 0, 0x02};
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
    if (d->ip_version == 4 && (d->dst[0] & 0xf0) == 0xe0) {
        const uint8_t mac[6] = {0x01, 0x00, 0x5e, d->dst[1] & 0x7f, d->dst[2], d->dst[3]};
        memcpy(p, mac, 6);
    } else if (d->ip_version == 6 && d->dst[0] == 0xff) {
        const uint8_t mac[6] = {0x33, 0x33, d->dst[12], d->dst[13], d->dst[14], d->dst[15]};
        memcpy(p, mac, 6);
    } else {
        memcpy(p, unicast_dst, 6);
    }
    memcpy(p + 6, src, 6);
    put_be16(p + 12, d->ip_version == 6 ? 0x86dd : 0x0800);
    return p + ETH_HEADER;
}

/* IP and UDP headers and the payload, from ``p``. */
static void write_datagram(const pcap_udp *d, uint16_t ip_id, uint8_t *p)
{
    size_t udp_len = UDP_HEADER + d->payload_len;
    uint8_t *udp;
    if (d->ip_version == 6) {
        put_be16(p, 0x6000);    /* version 6, traffic class and flow label 0 */
        put_be16(p + 2, 0);
        put_be16(p + 4, (uint16_t) udp_len);
        p[6] = 17;              /* next header: UDP */
        p[7] = 64;              /* hop limit */
        memcpy(p + 8, d->src, 16);
        memcpy(p + 24, d->dst, 16);
        udp = p + IPV6_HEADER;
    } else {
        p[0] = 0x45;            /* version 4, 5 words of header */
        p[1] = 0;
        put_be16(p + 2, (uint16_t) (IPV4_HEADER + udp_len));
        put_be16(p + 4, ip_id);
        put_be16(p + 6, 0x4000);    /* don't fragment, offset 0 */
        p[8] = 64;              /* TTL */
        p[9] = 17;              /* UDP */
        put_u16(p + 10, 0);
        memcpy(p + 12, d->src, 4);
        memcpy(p + 16, d->dst, 4);
        put_u16(p + 10, finish_checksum(sum_words(0, p, IPV4_HEADER)));
        udp = p + IPV4_HEADER;
    }
    put_be16(udp, d->src_port);
    put_be16(udp + 2, d->dst_port);
    put_be16(udp + 4, (uint16_t) udp_len);
    put_u16(udp + 6, 0);
    memcpy(udp + UDP_HEADER, d->payload, d->payload_len);
    if (d->ip_version == 6) {
        /* pseudo-header (addresses, length, next header), then the datagram */
        uint8_t tail[8] = {0, 0, (uint8_t) (udp_len >> 8), (uint8_t) udp_len, 0, 0, 0, 17};
        uint64_t sum = sum_words(0, p + 8, 32);
        sum = sum_words(sum, tail, 8);
        sum = sum_words(sum, udp, udp_len);
        uint16_t check = finish_checksum(sum);
        /* 0 means "no checksum", which IPv6 forbids; its complement is the same sum */
        put_u16(udp + 6, check ? check : 0xffff);
    }
}

size_t pcapw_record(int format, const pcap_udp *d, uint64_t ts_ns, uint16_t ip_id,
                    uint8_t *out)
{
    if (d->payload_len > pcapw_max_payload(d->ip_version))
        return 0;
    size_t frame = frame_size(d->ip_version, d->payload_len);
    size_t total = pcapw_record_size(format, d->ip_version, d->payload_len);
    uint8_t *p;
    if (format == PCAP_FORMAT_NG) {
        put_u32(out, NG_EPB);
        put_u32(out + 4, (uint32_t) total);
        put_u32(out + 8, 0);    /* interface 0 */
        put_u32(out + 12, (uint32_t) (ts_ns >> 32));
        put_u32(out + 16, (uint32_t) ts_ns);
        put_u32(out + 20, (uint32_t) frame);
        put_u32(out + 24, (uint32_t) frame);
        p = out + NG_EPB_HEAD;
        memset(p + frame, 0, -frame & 3);
        put_u32(out + total - 4, (uint32_t) total);
    } else {
        put_u32(out, (uint32_t) (ts_ns / 1000000000u));
        put_u32(out + 4, (uint32_t) (ts_ns % 1000000000u));
        put_u32(out + 8, (uint32_t) frame);
        put_u32(out + 12, (uint32_t) frame);
        p = out + 16;
    }
    write_datagram(d, ip_id, write_ethernet(d, p));
    return total;
}
