"""Send a plan of groups of heaps (tests/groupsets.py) into the reference
BytesStream; write its bytes to a file and print the byte counts of the
groups as JSON."""

import argparse
import json

import _common  # noqa: F401  (puts tests/ on sys.path for groupsets)

import spead2
import spead2.send

import groupsets


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan", required=True, choices=sorted(groupsets.PLANS))
    parser.add_argument("--output", required=True, help="file for the stream's bytes")
    args = parser.parse_args()
    plan = groupsets.PLANS[args.plan]
    stream = spead2.send.BytesStream(spead2.ThreadPool(), groupsets.bytes_config(spead2, plan))
    counts = groupsets.send_plan(spead2, stream, plan)
    with open(args.output, "wb") as f:
        f.write(stream.getvalue())
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
