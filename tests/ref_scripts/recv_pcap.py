"""Replay a capture file with the reference's add_udp_pcap_file_reader and pickle what arrived."""

import _common


def main():
    parser = _common.receiver_parser(__doc__)
    parser.add_argument("--input", required=True, help="pcap capture file")
    parser.add_argument("--filter", default="", help="capture filter (libpcap syntax)")
    args = parser.parse_args()
    stream = _common.make_recv_stream(args)
    stream.add_udp_pcap_file_reader(args.input, args.filter)
    dump = _common.itemsets.collect_heaps(_common.spead2, stream, args.timeout)
    _common.write_dump(args.output, dump)
    print(len(dump["heaps"]), dump["end"])


if __name__ == "__main__":
    main()
