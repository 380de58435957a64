"""Receive SPEAD over TCP with the reference and pickle the item values
(an itemsets dump, as recv_udp.py writes; recv_tcp.py keeps raw items).

Listens on HOST:PORT (PORT 0: the OS picks one), prints the port number on
the first line of stdout once it is listening, and receives until the
end-of-stream heap arrives or --timeout seconds pass.
"""

import socket

import _common

import spead2
import spead2.recv


def main():
    parser = _common.receiver_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    family, _, _, _, addr = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(1)
    port = sock.getsockname()[1]
    stream = _common.make_recv_stream(args)
    stream.add_tcp_reader(sock)
    sock.close()
    print(port, flush=True)
    dump = _common.itemsets.collect_heaps(spead2, stream, args.timeout)
    _common.write_dump(args.output, dump)
    print(len(dump["heaps"]), dump["end"])


if __name__ == "__main__":
    main()
