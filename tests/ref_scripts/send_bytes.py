"""Write the reference BytesStream output for N heaps of an item set to a file."""

import _common

import spead2
import spead2.send


def main():
    parser = _common.sender_parser(__doc__)
    parser.add_argument("--output", required=True, help="file for the stream's bytes")
    args = parser.parse_args()
    flavour = _common.itemsets.make_flavour(spead2, args.heap_address_bits, args.bug_compat)
    stream = spead2.send.BytesStream(
        spead2.ThreadPool(), spead2.send.StreamConfig(max_packet_size=args.max_packet_size))
    _common.itemsets.send_heaps(spead2, stream.send_heap, args.itemset, args.heaps, flavour)
    data = stream.getvalue()
    with open(args.output, "wb") as f:
        f.write(data)
    print(len(data))


if __name__ == "__main__":
    main()
