"""Receive a file of SPEAD packets with the reference and pickle what arrived."""

import _common

import spead2
import spead2.recv


def main():
    parser = _common.receiver_parser(__doc__)
    parser.add_argument("--input", required=True, help="file of concatenated SPEAD packets")
    args = parser.parse_args()
    with open(args.input, "rb") as f:
        data = f.read()
    stream = _common.make_recv_stream(args)
    stream.add_buffer_reader(data)
    dump = _common.itemsets.collect_heaps(spead2, stream, args.timeout)
    _common.write_dump(args.output, dump)
    print(len(dump["heaps"]), dump["end"])


if __name__ == "__main__":
    main()
