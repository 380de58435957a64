"""Errors from the completion-notification descriptor of a sending stream.

Asynchronous sends (spead2.send.asyncio) ask the stream for an eventfd that
becomes readable when heaps finish.  If it cannot be created, the OSError
must carry the real errno.  Runs in a child interpreter, since it exhausts
the process's descriptors.
"""

from isolated import check_python


def test_enable_notify_failure_keeps_errno():
    out = check_python("""
        import errno, os, resource
        import spead2, spead2.send
        stream = spead2.send.BytesStream(spead2.ThreadPool())
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        held = []
        try:
            while True:
                held.append(os.dup(0))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        try:
            stream._enable_notify()
        except OSError as exc:
            err = exc
        else:
            raise AssertionError("eventfd was created with no descriptor left")
        for fd in held:
            os.close(fd)
        print(err.errno == errno.EMFILE, repr(err))
    """)
    assert out.startswith("True "), out
