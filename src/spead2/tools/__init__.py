"""Command-line programs built on the public spead2 API.

- ``spead2-recv`` (:mod:`spead2.tools.recv`): receive a stream from UDP or a
  capture file and print its items, or live statistics;
- ``spead2-send`` (:mod:`spead2.tools.send`): send synthetic heaps over UDP or
  into a capture file, or replay a capture's packets over UDP;
- ``spead2-bench`` (:mod:`spead2.tools.bench`): find the highest rate at which
  a sender and a receiver on this machine exchange heaps without loss.

Each module also runs with ``python -m spead2.tools.NAME``.
"""
