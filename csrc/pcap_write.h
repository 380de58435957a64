/* Writing capture files: a file header, then one record per UDP datagram,
 * each framed as Ethernet / IPv4 or IPv6 / UDP, so that tcpdump, tshark
 * and the pcap reader (pcap.h) decode it.
 *
 * Two formats: classic pcap with nanosecond timestamps, and pcapng (one
 * section, one Ethernet interface with nanosecond resolution, an Enhanced
 * Packet Block per datagram). Both are written in the host's byte order,
 * as libpcap writes them.
 *
 * Frames carry the datagram's real addresses and ports (a ``pcap_udp``, as
 * the reader fills it in); Ethernet addresses are made up (locally
 * administered), except that a multicast IP destination gets its mapped
 * multicast MAC. The IPv4 header has a valid checksum and the DF flag (the
 * datagram is whole); the UDP checksum is 0 (none) over IPv4 and computed
 * over IPv6, where 0 is not allowed.
 *
 * Sans-IO: everything writes into memory the caller provides.
 */
#ifndef SPEAD2_PCAP_WRITE_H
#define SPEAD2_PCAP_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "pcap.h"

/* The largest UDP payload a frame can carry: 65535 bytes of IPv4 packet
 * less its 20-byte header and UDP's 8; IPv6's payload length field counts
 * the UDP header but not its own 40 bytes. */
#define PCAPW_MAX_PAYLOAD_IPV4 65507
#define PCAPW_MAX_PAYLOAD_IPV6 65527

/* Bytes of a file header, at most (``pcapw_file_header`` returns the exact
 * number). */
#define PCAPW_FILE_HEADER_MAX 64
/* Bytes a record adds to its payload, at most: a pcapng block (28 bytes
 * before the frame, padding of up to 3 and a 4-byte trailer) around
 * Ethernet (14), IPv6 (40) and UDP (8). */
#define PCAPW_RECORD_OVERHEAD_MAX (28 + 3 + 4 + 14 + 40 + 8)

/* The largest payload of a datagram of IP version ``ip_version``. */
size_t pcapw_max_payload(int ip_version);

/* Write the header of a file of ``format`` (PCAP_FORMAT_CLASSIC or
 * PCAP_FORMAT_NG) to ``out`` (PCAPW_FILE_HEADER_MAX bytes); returns its
 * length. */
size_t pcapw_file_header(int format, uint8_t *out);

/* The length of the record ``pcapw_record`` writes for a payload of
 * ``payload_len`` bytes. */
size_t pcapw_record_size(int format, int ip_version, size_t payload_len);

/* Write the record of datagram ``d`` (its ip_version, addresses, ports,
 * payload and payload_len; VLAN tags are not written) received at
 * ``ts_ns`` nanoseconds since the Unix epoch, with ``ip_id`` as the IPv4
 * identification. ``out`` must have room for ``pcapw_record_size`` bytes,
 * which this returns; the payload must be at most ``pcapw_max_payload``
 * bytes (0 is returned, and nothing written, if it is longer). */
size_t pcapw_record(int format, const pcap_udp *d, uint64_t ts_ns, uint16_t ip_id,
                    uint8_t *out);

#endif
