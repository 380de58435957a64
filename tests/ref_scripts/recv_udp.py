"""Receive SPEAD over UDP with the reference and pickle what arrived.

Binds HOST:PORT (PORT 0: the OS picks one), prints the bound port number on
the first line of stdout once it is listening, and receives until the
end-of-stream heap arrives, --timeout seconds pass or SIGTERM arrives (the
last two are recorded in the dump as end='timeout').
"""

import signal
import socket

import _common

import spead2
import spead2.recv


def main():
    parser = _common.receiver_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-size", type=int, default=9200, help="largest packet accepted")
    parser.add_argument("--buffer-size", type=int, default=8 * 1024 * 1024)
    args = parser.parse_args()
    family, _, _, _, addr = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.buffer_size)
    sock.bind(addr)
    port = sock.getsockname()[1]
    stream = _common.make_recv_stream(args)
    stream.add_udp_reader(sock, max_size=args.max_size)
    sock.close()
    terminated = []
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    print(port, flush=True)
    dump = _common.itemsets.collect_heaps(spead2, stream, args.timeout,
                                          stop_when=lambda: bool(terminated), grace=0.0)
    _common.write_dump(args.output, dump)
    print(len(dump["heaps"]), dump["end"])


if __name__ == "__main__":
    main()
