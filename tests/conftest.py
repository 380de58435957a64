import pytest

import refimpl


@pytest.fixture(scope="session")
def ref_python():
    """The reference implementation (spead2 4.5.1) in its own environment, as a
    :class:`refimpl.RefPython`; installed on first use, and the test is skipped
    if it cannot be installed."""
    try:
        return refimpl.RefPython(refimpl.ensure_ref_python())
    except refimpl.RefUnavailable as exc:
        pytest.skip(f"the reference spead2 {refimpl.REF_VERSION} could not be installed: {exc}")
