"""The emulator's replacement for hyperframe's `_raw_data_repr` (h2 builds a frame's repr for
every frame it receives): the same text as hyperframe's own for any data, without hex-dumping
the whole body."""

from __future__ import annotations

import hyperframe.frame
from hypothesis import example, given
from hypothesis import strategies as st

from runner.emulator import server


@given(data=st.one_of(st.none(), st.binary(max_size=100), st.binary(min_size=1000, max_size=5000)))
@example(data=b"")
@example(data=bytes(10))
@example(data=bytes(11))
def test_raw_data_repr_is_hyperframes(data: bytes | None) -> None:
    assert hyperframe.frame._raw_data_repr is server._raw_data_repr  # installed
    assert server._raw_data_repr(data) == server._hyperframe_raw_data_repr(data)


@given(data=st.binary(max_size=3000), stream_id=st.integers(1, 2**31 - 1))
def test_data_frame_repr_unchanged(data: bytes, stream_id: int) -> None:
    frame = hyperframe.frame.DataFrame(stream_id, data=data, flags=["END_STREAM"])
    shown = server._hyperframe_raw_data_repr(data) if data else "None"
    assert repr(frame) == f"DataFrame(stream_id={stream_id}, flags=['END_STREAM']): {shown}"
