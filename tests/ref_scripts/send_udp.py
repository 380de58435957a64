"""Send N heaps of an item set with the reference UdpStream, then an end-of-stream heap."""

import socket

import _common

import spead2
import spead2.send


def main():
    parser = _common.sender_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="bytes per second (0: unlimited)")
    parser.add_argument("--buffer-size", type=int, default=524288)
    args = parser.parse_args()
    if not 0 < args.port < 65536:
        parser.error("--port must be in 1..65535")
    host = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0][4][0]
    flavour = _common.itemsets.make_flavour(spead2, args.heap_address_bits, args.bug_compat)
    config = spead2.send.StreamConfig(max_packet_size=args.max_packet_size, rate=args.rate)
    stream = spead2.send.UdpStream(spead2.ThreadPool(), [(host, args.port)], config,
                                   buffer_size=args.buffer_size)
    _common.itemsets.send_heaps(spead2, stream.send_heap, args.itemset, args.heaps, flavour)
    print("sent", args.heaps)


if __name__ == "__main__":
    main()
