"""Shared command-line handling for the reference scripts.

These scripts run under the reference implementation's interpreter (PyPI
``spead2==4.5.1``, whose API differs from the documented one). The item sets
and the heap sending/receiving logic come from ``tests/itemsets.py``.
"""

import argparse
import os
import pickle
import sys

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import itemsets  # noqa: E402
import spead2  # noqa: E402
import spead2.recv  # noqa: E402


def sender_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--itemset", required=True, choices=sorted(itemsets.ITEM_SETS))
    parser.add_argument("--heaps", type=int, default=5, help="number of data heaps")
    parser.add_argument("--heap-address-bits", type=int, default=40, choices=range(8, 64, 8),
                        metavar="{8,16,...,56}")
    parser.add_argument("--bug-compat", type=int, default=0, choices=range(8), metavar="{0..7}")
    parser.add_argument("--max-packet-size", type=int, default=1472)
    return parser


def receiver_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", required=True, help="pickle file for the received heaps")
    parser.add_argument("--bug-compat", type=int, default=0, choices=range(8), metavar="{0..7}")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="stop receiving after this many seconds")
    parser.add_argument("--max-heaps", type=int, default=4)
    parser.add_argument("--ring-heaps", type=int, default=4)
    return parser


def make_recv_stream(args):
    return spead2.recv.Stream(
        spead2.ThreadPool(),
        spead2.recv.StreamConfig(max_heaps=args.max_heaps, bug_compat=args.bug_compat),
        spead2.recv.RingStreamConfig(heaps=args.ring_heaps))


def write_dump(path, dump):
    dump = itemsets.encode_dump(dump)
    dump["implementation"] = "spead2 reference"
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(dump, f, protocol=4)
    os.replace(tmp, path)
