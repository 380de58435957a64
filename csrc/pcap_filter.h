/* Capture filters: the part of the tcpdump (pcap-filter) language that
 * selects UDP datagrams, compiled once and evaluated per datagram.
 *
 * Primitives: ``udp``, ``ip``, ``ip6``, ``[src|dst] host ADDR``,
 * ``[src|dst] net ADDR/LEN``, ``[src|dst] port N``, ``[src|dst] portrange
 * A-B``, ``vlan`` and ``vlan N``; ``udp``, ``ip`` or ``ip6`` may qualify the
 * primitive after them (``udp port 7148``); a bare value repeats the last
 * qualifier (``port 7148 or 7149``). Operators: ``not``/``!``, ``and``/``&&``,
 * ``or``/``||`` and parentheses. As in libpcap, ``not`` binds tightest and
 * ``and`` and ``or`` have equal precedence, grouping from the left: ``a or b
 * and c`` is ``(a or b) and c``.
 *
 * Without ``src`` or ``dst``, an address or port matches either side.
 * ``vlan N`` matches a datagram any of whose VLAN tags has id N (tcpdump's
 * shifting of later offsets after ``vlan`` is not needed here: every
 * primitive reads the parsed datagram, whatever tags it carried).
 *
 * Sans-IO: compiling and matching touch only memory.
 */
#ifndef SPEAD2_PCAP_FILTER_H
#define SPEAD2_PCAP_FILTER_H

#include <stddef.h>

#include "pcap.h"

typedef struct pcap_filter pcap_filter;

/* Compile ``expr``. Returns NULL with a message naming the offending word
 * in ``err`` (``err_len`` bytes, at least 1) when the expression is not
 * understood, or when out of memory. An empty expression matches every
 * datagram. */
pcap_filter *pcap_filter_compile(const char *expr, char *err, size_t err_len);
void pcap_filter_free(pcap_filter *f);
/* Whether the parsed datagram ``d`` (PCAP_FRAME_UDP) matches. */
int pcap_filter_match(const pcap_filter *f, const pcap_udp *d);

#endif
