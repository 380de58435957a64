"""Send N heaps of an item set with the reference TcpStream, then an end-of-stream heap.

Connects to HOST:PORT (a receiver must be listening), sends, and closes the
connection on exit.
"""

import socket

import _common

import spead2
import spead2.send


def main():
    parser = _common.sender_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if not 0 < args.port < 65536:
        parser.error("--port must be in 1..65535")
    host = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][4][0]
    flavour = _common.itemsets.make_flavour(spead2, args.heap_address_bits, args.bug_compat)
    config = spead2.send.StreamConfig(max_packet_size=args.max_packet_size)
    stream = spead2.send.TcpStream(spead2.ThreadPool(), [(host, args.port)], config)
    _common.itemsets.send_heaps(spead2, stream.send_heap, args.itemset, args.heaps, flavour)
    del stream  # closes the connection: the receiver sees its end
    print("sent", args.heaps)


if __name__ == "__main__":
    main()
