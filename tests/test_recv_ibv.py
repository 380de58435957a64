"""The ibverbs receive names exist (programs probe for them) and fail
cleanly on a host without RDMA hardware, after checking their arguments in
the reference's order."""

import errno

import pytest

import spead2
import spead2.recv as recv

GOOD = dict(endpoints=[("239.1.2.3", 7148)], interface_address="127.0.0.1")


def test_config_defaults_and_checks():
    c = recv.UdpIbvConfig()
    assert (c.endpoints, c.interface_address, c.buffer_size, c.max_size, c.comp_vector,
            c.max_poll) == ([], "", 16777216, 9200, 0, 10)
    assert (recv.UdpIbvConfig.DEFAULT_BUFFER_SIZE, recv.UdpIbvConfig.DEFAULT_MAX_SIZE,
            recv.UdpIbvConfig.DEFAULT_MAX_POLL) == (16777216, 9200, 10)
    assert recv.UdpIbvConfig(buffer_size=0).buffer_size == 16777216
    for bad in (dict(max_poll=0), dict(max_poll=-1), dict(max_size=0)):
        with pytest.raises(ValueError):
            recv.UdpIbvConfig(**bad)
    with pytest.raises(TypeError):
        recv.UdpIbvConfig(GOOD)


@pytest.mark.parametrize("stream_kind", ["stream", "chunk"])
def test_add_udp_ibv_reader_fails_with_no_device(thread_pool, stream_kind):
    if stream_kind == "stream":
        stream = spead2.recv.Stream(thread_pool)
    else:
        stream = recv.ChunkRingStream(
            thread_pool, recv.StreamConfig(),
            recv.ChunkStreamConfig(place=recv.ChunkPlacement(chunk_item=0x1600, chunk_step=1,
                                                             heap_size=8)),
            recv.ChunkRingbuffer(1), recv.ChunkRingbuffer(1))
    with pytest.raises(spead2.IbvUnavailable) as info:
        stream.add_udp_ibv_reader(recv.UdpIbvConfig(**GOOD))
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, OSError)
    assert info.value.errno == errno.ENODEV and "127.0.0.1" in str(info.value)
    stream.stop()


@pytest.mark.parametrize("config, message", [
    (dict(), "endpoints is empty"),
    (dict(endpoints=[("::1", 7148)], interface_address="127.0.0.1"),
     "endpoint is not an IPv4 address"),
    (dict(endpoints=[("239.1.2.3", 7148)]), "interface address"),
    (dict(endpoints=[("239.1.2.3", 7148)], interface_address="::1"), "interface address"),
])
def test_argument_errors_come_before_the_device(thread_pool, config, message):
    stream = spead2.recv.Stream(thread_pool)
    with pytest.raises(ValueError, match=message):
        stream.add_udp_ibv_reader(recv.UdpIbvConfig(**config))


def test_host_names_are_resolved_first(thread_pool):
    stream = spead2.recv.Stream(thread_pool)
    with pytest.raises(RuntimeError, match="Host not found"):
        stream.add_udp_ibv_reader(recv.UdpIbvConfig(endpoints=[("nonexistent.invalid", 1)]))


def test_ibv_context():
    assert hasattr(spead2, "IbvContext")
    with pytest.raises(spead2.IbvUnavailable):
        spead2.IbvContext("127.0.0.1")
