"""Receive one TCP connection with the reference and pickle the raw heaps.

Listens on HOST:0, prints the port on the first line of stdout, accepts one
connection (add_tcp_reader's acceptor form) and receives until the stream
ends (the peer closes, or a stop heap) or --timeout seconds pass. The
pickle holds ``{'heaps': [{'cnt', 'items': [(id, bytes)]}], 'packets',
'end': 'stopped' | 'timeout'}``: raw items, so that damaged streams of
hand-built heaps can be compared byte for byte.
"""

import pickle
import socket
import threading

import _common

import spead2
import spead2.recv


def main():
    parser = _common.receiver_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-size", type=int, default=65536, help="largest packet accepted")
    args = parser.parse_args()
    args.ring_heaps = max(args.ring_heaps, 64)  # nothing waits on the consumer
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    acceptor = socket.socket(family, socket.SOCK_STREAM)
    acceptor.bind((args.host, 0))
    acceptor.listen()
    stream = _common.make_recv_stream(args)
    stream.add_tcp_reader(acceptor, max_size=args.max_size)
    print(acceptor.getsockname()[1], flush=True)
    acceptor.close()
    heaps = []

    def run():
        for heap in stream:
            heaps.append({"cnt": heap.cnt,
                          "items": [(item.id, bytes(item)) for item in heap.get_items()]})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(args.timeout)
    end = "timeout" if thread.is_alive() else "stopped"
    stream.stop()
    thread.join(10)
    dump = {"heaps": list(heaps), "packets": stream.stats.packets, "end": end}
    with open(args.output + ".tmp", "wb") as f:
        pickle.dump(dump, f, protocol=4)
    _common.os.replace(args.output + ".tmp", args.output)
    print(len(heaps), end)


if __name__ == "__main__":
    main()
